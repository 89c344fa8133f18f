//! Proxy integration tests: a real throwaway PostgreSQL, the proxy on a free port, real
//! drivers (tokio-postgres, psql, pgbench) as clients.

#![allow(unreachable_pub)]

mod common;

mod auth;
mod auth_query;
mod basic;
mod breaker;
mod cancel;
mod cap;
mod clock;
mod db_cap;
mod defer_begin;
mod drivers;
mod errors;
mod lifecycle;
mod negotiation;
mod params;
mod park;
mod pgbench;
mod psql;
mod query_timeout;
mod release;
mod reprepare;
mod session;
mod shutdown;
mod tls;
mod turn;
