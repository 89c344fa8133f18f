//! The time the pool reads on its hot path: a checkout and a return per transaction.
//!
//! A clock read (`clock_gettime` through the vDSO) costs about 25 ns on the machines the
//! benchmarks run on, as much as the rest of a checkout. An event-loop proxy does not need a
//! fresh reading for every operation: everything one turn of the loop handles happened "now"
//! as far as idle times, lifetimes and use times go. PgBouncer reads the clock once per turn
//! of its loop for the same reason.
//!
//! A runtime that reports each wake-up of its threads ([`loop_turned`], installed as tokio's
//! `on_thread_unpark` hook) gets the same here: on such a thread the first [`now`] after a
//! wake-up reads the clock and the following ones reuse that reading. A thread that never
//! parks (a loop so busy it only yields to the driver) still reads the clock every
//! [`MAX_REUSE`] calls, so no reading grows old. On every other thread (no hook: a library
//! user's runtime, tests with paused time, the blocking pool) [`now`] is
//! [`Instant::now`], unchanged.

use std::cell::Cell;

use tokio::time::Instant;

/// Calls served from one reading at most, on a thread whose loop does not park.
pub const MAX_REUSE: u32 = 32;

#[derive(Debug, Clone, Copy)]
enum Cached {
    /// This thread's runtime does not report its wake-ups: every call reads the clock.
    Off,
    /// A wake-up since the last reading: the next call reads the clock.
    Stale,
    /// The last reading and how many calls it has served since.
    At(Instant, u32),
}

thread_local! {
    static CACHE: Cell<Cached> = const { Cell::new(Cached::Off) };
}

/// Tells the pool that this thread's event loop woke up: the next [`now`] on it reads the
/// clock, and later ones reuse the reading until the next wake-up. Install it as the
/// runtime's `on_thread_unpark` hook; calling it from anywhere else (a thread that does not
/// call it at every wake-up) would let readings grow old.
pub fn loop_turned() {
    CACHE.with(|c| c.set(Cached::Stale));
}

/// The current time as the pool's hot path sees it (see the module documentation).
#[inline]
pub fn now() -> Instant {
    CACHE.with(|c| match c.get() {
        Cached::Off => Instant::now(),
        Cached::At(at, served) if served < MAX_REUSE => {
            c.set(Cached::At(at, served + 1));
            at
        }
        Cached::Stale | Cached::At(..) => {
            let at = Instant::now();
            c.set(Cached::At(at, 1));
            at
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Runs `check` on a thread of its own: the clock's state is per thread.
    fn on_own_thread(check: impl FnOnce() + Send + 'static) {
        std::thread::spawn(check).join().unwrap();
    }

    #[test]
    fn without_the_hook_every_call_reads_the_clock() {
        on_own_thread(|| {
            let a = now();
            std::thread::sleep(Duration::from_millis(2));
            assert!(now() >= a + Duration::from_millis(2));
        });
    }

    #[test]
    fn one_reading_per_wake_up_and_a_fresh_one_after_the_next() {
        on_own_thread(|| {
            loop_turned();
            let a = now();
            std::thread::sleep(Duration::from_millis(2));
            assert_eq!(now(), a, "the same turn of the loop reuses the reading");
            loop_turned();
            assert!(
                now() >= a + Duration::from_millis(2),
                "a wake-up reads again"
            );
        });
    }

    #[test]
    fn a_loop_that_never_parks_still_reads_the_clock_every_max_reuse_calls() {
        on_own_thread(|| {
            loop_turned();
            let a = now();
            std::thread::sleep(Duration::from_millis(2));
            for _ in 1..MAX_REUSE {
                assert_eq!(now(), a);
            }
            assert!(now() >= a + Duration::from_millis(2));
        });
    }

    #[test]
    fn the_runtime_hook_keeps_readings_fresh_across_waits() {
        on_own_thread(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .on_thread_unpark(loop_turned)
                .build()
                .unwrap();
            rt.block_on(async {
                let a = now();
                tokio::time::sleep(Duration::from_millis(5)).await;
                assert!(now() >= a + Duration::from_millis(5));
            });
        });
    }
}
