//! The pool's behaviour above the wire, driven with a scripted connector and paused tokio time:
//! what a caller or an operator would notice (connections alive, errors, events), never
//! private fields. The same behaviours against a real PostgreSQL live in the `pgwarden`
//! crate's tests.

mod fake;

mod background;
mod cancellation;
mod closing;
mod events;
mod failures;
mod get_now;
