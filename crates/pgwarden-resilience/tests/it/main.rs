//! Integration tests of the tokio driver: paused time, a fake probe, counted log lines,
//! and one loopback TCP check.

mod fake_probe;
mod log_capture;
mod prober;
mod tcp;
