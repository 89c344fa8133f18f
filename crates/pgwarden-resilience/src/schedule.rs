//! Exponential backoff with jitter: how long to wait before the next attempt.
//!
//! The nominal schedule is `initial, initial*multiplier, ...` capped at `cap`
//! (10 s, 20 s, 40 s, ..., 600 s by default). Jitter scatters each delay by up to
//! `±jitter` of the nominal value so many instances do not knock in step; with
//! `jitter = 0` the nominal schedule comes out exactly. The cap is a hard upper
//! bound, jitter included.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Settings of a [`RetrySchedule`].
#[derive(Debug, Clone, PartialEq)]
pub struct RetryConfig {
    /// First delay after a failure. Default 10 s.
    pub initial: Duration,
    /// Factor between consecutive delays. Default 2.0. Values below 1.0 are treated as 1.0.
    pub multiplier: f64,
    /// Largest delay. Default 600 s.
    pub cap: Duration,
    /// Fraction of the nominal delay by which each delay is randomly scattered, both ways.
    /// Default 0.1 (±10 %). Clamped to `0.0..=1.0`.
    pub jitter: f64,
}

impl Default for RetryConfig {
    fn default() -> RetryConfig {
        RetryConfig {
            initial: Duration::from_secs(10),
            multiplier: 2.0,
            cap: Duration::from_secs(600),
            jitter: 0.1,
        }
    }
}

impl RetryConfig {
    /// The start-up schedule: 1 s doubling up to 30 s, ±10 % jitter.
    pub fn startup() -> RetryConfig {
        RetryConfig {
            initial: Duration::from_secs(1),
            multiplier: 2.0,
            cap: Duration::from_secs(30),
            jitter: 0.1,
        }
    }

    /// The same settings without jitter (deterministic; for tests and demos).
    pub fn without_jitter(mut self) -> RetryConfig {
        self.jitter = 0.0;
        self
    }
}

/// The backoff state: call [`RetrySchedule::next_delay`] after each failure and
/// [`RetrySchedule::reset`] after a success.
#[derive(Debug, Clone)]
pub struct RetrySchedule {
    config: RetryConfig,
    /// Nominal (un-jittered) value the next call to `next_delay` starts from.
    nominal_next: Duration,
    /// The delay most recently handed out; zero when none since the last reset.
    current: Duration,
    /// Delays handed out since the last reset.
    attempts: u32,
    rng: StdRng,
}

impl RetrySchedule {
    /// A fresh schedule; jitter is drawn from an entropy-seeded generator.
    pub fn new(config: RetryConfig) -> RetrySchedule {
        RetrySchedule::with_rng(config, StdRng::from_entropy())
    }

    /// A fresh schedule whose jitter is reproducible from `seed`.
    pub fn with_seed(config: RetryConfig, seed: u64) -> RetrySchedule {
        RetrySchedule::with_rng(config, StdRng::seed_from_u64(seed))
    }

    fn with_rng(config: RetryConfig, rng: StdRng) -> RetrySchedule {
        let nominal_next = config.initial.min(config.cap);
        RetrySchedule {
            config,
            nominal_next,
            current: Duration::ZERO,
            attempts: 0,
            rng,
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &RetryConfig {
        &self.config
    }

    /// The delay to wait after a failure; each call moves one step along the schedule.
    pub fn next_delay(&mut self) -> Duration {
        let nominal = self.nominal_next;
        let multiplier = self.config.multiplier.max(1.0);
        self.nominal_next = mul_capped(nominal, multiplier, self.config.cap);
        self.attempts = self.attempts.saturating_add(1);
        self.current = self.jittered(nominal);
        self.current
    }

    /// Back to the first step; call after a success.
    pub fn reset(&mut self) {
        self.nominal_next = self.config.initial.min(self.config.cap);
        self.current = Duration::ZERO;
        self.attempts = 0;
    }

    /// The delay most recently returned by [`RetrySchedule::next_delay`]; zero after a reset.
    pub fn current(&self) -> Duration {
        self.current
    }

    /// How many delays were handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    fn jittered(&mut self, nominal: Duration) -> Duration {
        let jitter = self.config.jitter.clamp(0.0, 1.0);
        if jitter == 0.0 || nominal.is_zero() {
            return nominal;
        }
        let factor = 1.0 + self.rng.gen_range(-jitter..=jitter);
        mul_capped(nominal, factor, self.config.cap)
    }
}

/// `value * factor`, never above `cap` (and never panicking on overflow).
fn mul_capped(value: Duration, factor: f64, cap: Duration) -> Duration {
    let secs = value.as_secs_f64() * factor;
    if !secs.is_finite() || secs >= cap.as_secs_f64() {
        cap
    } else {
        Duration::from_secs_f64(secs.max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(list: &[u64]) -> Vec<Duration> {
        list.iter().copied().map(Duration::from_secs).collect()
    }

    #[test]
    fn nominal_schedule_without_jitter() {
        let mut schedule = RetrySchedule::new(RetryConfig::default().without_jitter());
        let delays: Vec<_> = (0..8).map(|_| schedule.next_delay()).collect();
        assert_eq!(delays, secs(&[10, 20, 40, 80, 160, 320, 600, 600]));
        assert_eq!(schedule.current(), Duration::from_secs(600));
        assert_eq!(schedule.attempts(), 8);
    }

    #[test]
    fn reset_starts_over() {
        let mut schedule = RetrySchedule::new(RetryConfig::default().without_jitter());
        schedule.next_delay();
        schedule.next_delay();
        schedule.reset();
        assert_eq!(schedule.current(), Duration::ZERO);
        assert_eq!(schedule.next_delay(), Duration::from_secs(10));
    }

    #[test]
    fn startup_schedule_doubles_to_thirty_seconds() {
        let mut schedule = RetrySchedule::new(RetryConfig::startup().without_jitter());
        let delays: Vec<_> = (0..7).map(|_| schedule.next_delay()).collect();
        assert_eq!(delays, secs(&[1, 2, 4, 8, 16, 30, 30]));
    }

    #[test]
    fn jitter_stays_within_bounds_and_varies() {
        let nominal = [10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 600.0, 600.0];
        let mut seen_distinct = false;
        for seed in 0..50 {
            let mut schedule = RetrySchedule::with_seed(RetryConfig::default(), seed);
            for expected in nominal {
                let got = schedule.next_delay().as_secs_f64();
                assert!(got >= expected * 0.9 - 1e-9, "{got} below {expected}");
                assert!(
                    got <= (expected * 1.1).min(600.0) + 1e-9,
                    "{got} above {expected}"
                );
                seen_distinct |= (got - expected).abs() > 1e-6;
            }
        }
        assert!(seen_distinct, "jitter never moved a delay");
    }

    #[test]
    fn same_seed_same_delays() {
        let mut a = RetrySchedule::with_seed(RetryConfig::default(), 7);
        let mut b = RetrySchedule::with_seed(RetryConfig::default(), 7);
        for _ in 0..10 {
            assert_eq!(a.next_delay(), b.next_delay());
        }
    }
}
