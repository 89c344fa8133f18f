//! Acquire + release cost: pgwarden-pool beside deadpool and bb8 (written next).

fn main() {}
