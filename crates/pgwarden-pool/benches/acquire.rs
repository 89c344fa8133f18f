#![allow(missing_docs)] // criterion_group! generates undocumented items
//! Acquire + release of one connection: pgwarden's pool beside deadpool and bb8, measured in
//! the same run with the same trivial connector (no I/O), so only the pools' own cost shows.
//!
//! - `uncontended`: one task, a connection always idle.
//! - `contended`: 64 tasks share 4 connections; each task does 100 checkouts and yields while
//!   holding one, so waiters queue. One iteration = 6,400 checkouts.
//!
//! Equivalent settings: 4 connections, a 5 s acquire timeout, no checkout test.
//!
//! Run with `make bench-pool` (or `cargo bench -p pgwarden-pool --bench acquire`).

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use tokio::runtime::Runtime;

const TASKS: usize = 64;
const PER_TASK: usize = 100;
const CONNECTIONS: usize = 4;

struct Trivial;

impl pgwarden_pool::Connector for Trivial {
    type Connection = u64;
    type Error = std::io::Error;
    async fn connect(&self) -> Result<u64, std::io::Error> {
        Ok(1)
    }
    async fn ping(&self, _: &mut u64) -> Result<(), std::io::Error> {
        Ok(())
    }
    fn is_broken(&self, _: &u64) -> bool {
        false
    }
    async fn close(&self, _: u64) {}
}

struct DeadpoolTrivial;

impl deadpool::managed::Manager for DeadpoolTrivial {
    type Type = u64;
    type Error = std::io::Error;
    async fn create(&self) -> Result<u64, std::io::Error> {
        Ok(1)
    }
    async fn recycle(
        &self,
        _: &mut u64,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<std::io::Error> {
        Ok(())
    }
}

struct Bb8Trivial;

impl bb8::ManageConnection for Bb8Trivial {
    type Connection = u64;
    type Error = std::io::Error;
    async fn connect(&self) -> Result<u64, std::io::Error> {
        Ok(1)
    }
    async fn is_valid(&self, _: &mut u64) -> Result<(), std::io::Error> {
        Ok(())
    }
    fn has_broken(&self, _: &mut u64) -> bool {
        false
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn pools(c: &mut Criterion) {
    let rt = runtime();
    let ours = rt.block_on(async {
        let config = pgwarden_pool::PoolConfig {
            max_size: CONNECTIONS,
            min_idle: CONNECTIONS,
            ..Default::default()
        };
        let pool = pgwarden_pool::Pool::new(Trivial, config).expect("pool");
        // Warm: every connection open.
        let held: Vec<_> = futures_join(&pool).await;
        drop(held);
        pool
    });
    let lean = rt.block_on(async {
        let config = pgwarden_pool::PoolConfig {
            max_size: CONNECTIONS,
            min_idle: CONNECTIONS,
            leak_threshold: None,
            ..Default::default()
        };
        let pool = pgwarden_pool::Pool::new(Trivial, config).expect("pool");
        drop(futures_join(&pool).await);
        pool
    });
    let dead: deadpool::managed::Pool<DeadpoolTrivial> =
        deadpool::managed::Pool::builder(DeadpoolTrivial)
            .max_size(CONNECTIONS)
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .expect("deadpool");
    let bb = rt.block_on(async {
        bb8::Pool::builder()
            .max_size(CONNECTIONS as u32)
            .connection_timeout(std::time::Duration::from_secs(5))
            .test_on_check_out(false)
            .build(Bb8Trivial)
            .await
            .expect("bb8")
    });

    let mut group = c.benchmark_group("uncontended");
    group.bench_function("pgwarden", |b| {
        b.to_async(&rt)
            .iter(|| async { drop(ours.get().await.expect("get")) })
    });
    group.bench_function("pgwarden_without_leak_tracking", |b| {
        b.to_async(&rt)
            .iter(|| async { drop(lean.get().await.expect("get")) })
    });
    group.bench_function("deadpool", |b| {
        b.to_async(&rt)
            .iter(|| async { drop(dead.get().await.expect("get")) })
    });
    group.bench_function("bb8", |b| {
        b.to_async(&rt)
            .iter(|| async { drop(bb.get().await.expect("get")) })
    });
    group.finish();

    let mut group = c.benchmark_group("contended_64_tasks_4_connections");
    group.sample_size(20);
    let ours = Arc::new(ours);
    let lean = Arc::new(lean);
    let dead = Arc::new(dead);
    let bb = Arc::new(bb);
    group.bench_function("pgwarden", |b| {
        b.to_async(&rt).iter(|| {
            let pool = Arc::clone(&ours);
            contended(move || {
                let pool = Arc::clone(&pool);
                async move {
                    let c = pool.get().await.expect("get");
                    tokio::task::yield_now().await;
                    drop(c);
                }
            })
        })
    });
    group.bench_function("pgwarden_without_leak_tracking", |b| {
        b.to_async(&rt).iter(|| {
            let pool = Arc::clone(&lean);
            contended(move || {
                let pool = Arc::clone(&pool);
                async move {
                    let c = pool.get().await.expect("get");
                    tokio::task::yield_now().await;
                    drop(c);
                }
            })
        })
    });
    group.bench_function("deadpool", |b| {
        b.to_async(&rt).iter(|| {
            let pool = Arc::clone(&dead);
            contended(move || {
                let pool = Arc::clone(&pool);
                async move {
                    let c = pool.get().await.expect("get");
                    tokio::task::yield_now().await;
                    drop(c);
                }
            })
        })
    });
    group.bench_function("bb8", |b| {
        b.to_async(&rt).iter(|| {
            let pool = Arc::clone(&bb);
            contended(move || {
                let pool = Arc::clone(&pool);
                async move {
                    let c = pool.get().await.expect("get");
                    tokio::task::yield_now().await;
                    drop(c);
                }
            })
        })
    });
    group.finish();
}

async fn futures_join(pool: &pgwarden_pool::Pool<Trivial>) -> Vec<pgwarden_pool::Pooled<Trivial>> {
    let mut held = Vec::new();
    for _ in 0..CONNECTIONS {
        held.push(pool.get().await.expect("warm"));
    }
    held
}

/// Runs `TASKS` tasks doing `PER_TASK` checkouts each.
async fn contended<F, Fut>(checkout: F)
where
    F: Fn() -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let mut tasks = Vec::with_capacity(TASKS);
    for _ in 0..TASKS {
        let checkout = checkout.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..PER_TASK {
                checkout().await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
}

criterion_group!(benches, pools);
criterion_main!(benches);
