//! The library against real, throwaway PostgreSQL and Redis servers (one test binary, one module
//! per behaviour).

#![allow(unreachable_pub)]

mod common;

mod cap;
mod checkout;
mod lifecycle;
mod recycling;
mod redis;
mod resilience;
mod safety;
