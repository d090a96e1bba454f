//! The one back-off policy of the system: exponential, capped, with
//! jitter. Every loop that retries after a failure (the command executor on
//! a lost race, the relay and the projection workers on a broker or
//! database outage, the saga worker, the read side's check against the
//! store) waits by it, so that after an outage the workers of a deployment
//! do not retry in step.
//!
//! Written here rather than taken from a crate: the loops own their retry
//! decisions (which errors, for how long, what to record) and only need
//! the pause; a retry crate's combinators would wrap each loop's control
//! flow for a two-line computation.

use std::time::Duration;

use rand::Rng;

/// Exponential back-off from `base`, doubling per attempt up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    pub const fn new(base: Duration, max: Duration) -> Self {
        Self { base, max }
    }

    /// The longest pause before retry number `attempt` (0 for the first):
    /// `base · 2^attempt`, at most `max`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        self.base
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.max)
    }

    /// The pause before retry number `attempt`: drawn evenly between half
    /// the ceiling and the ceiling ("equal jitter"), so it still grows with
    /// each failure but two workers that failed together drift apart.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt);
        let half = ceiling / 2;
        let spread = u64::try_from((ceiling - half).as_micros()).unwrap_or(u64::MAX);
        half + Duration::from_micros(rand::thread_rng().gen_range(0..=spread))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_doubles_up_to_the_cap() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let ceilings: Vec<u128> = (0..8).map(|a| backoff.ceiling(a).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(5));
    }

    #[test]
    fn a_delay_lies_between_half_the_ceiling_and_the_ceiling_and_varies() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let delays: Vec<Duration> = (0..200).map(|_| backoff.delay(3)).collect();
        assert!(delays
            .iter()
            .all(|d| *d >= Duration::from_millis(400) && *d <= Duration::from_millis(800)));
        let first = delays[0];
        assert!(delays.iter().any(|d| *d != first), "jittered");
    }
}
