//! A circuit breaker in front of the payment provider: after repeated
//! failures it fails fast for a while instead of piling up slow calls, then
//! lets one probe through to see whether the provider recovered.

use async_trait::async_trait;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::payment_provider::{Charge, ChargeError, ChargeRequest, FoundCharge, PaymentProvider};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls fail fast until the cool-down ends.
    Open,
    /// One probe call is in flight; others fail fast.
    HalfOpen,
}

impl BreakerState {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct BreakerSettings {
    /// Consecutive failures that open the circuit.
    pub failure_threshold: u32,
    /// How long it stays open before a probe.
    pub open_for: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(30),
        }
    }
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    failures: u32,
    opened_at: Option<Instant>,
}

/// What [`CircuitBreaker::admit`] let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// An ordinary call (closed).
    Call,
    /// The one call of the half-open state: its outcome must be recorded,
    /// or every later call fails fast.
    Probe,
}

/// The state machine, with time passed in so it is testable as is.
#[derive(Debug)]
pub struct CircuitBreaker {
    name: &'static str,
    settings: BreakerSettings,
    inner: Mutex<Inner>,
}

impl CircuitBreaker {
    #[must_use]
    pub fn new(name: &'static str, settings: BreakerSettings) -> Self {
        // Exported at 0 from the start: an alert on `increase(...) > 0`
        // cannot fire on a series whose first sample is already 1.
        for to in [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ] {
            metrics::counter!("circuit_breaker_state_changes_total", "breaker" => name, "to" => to.as_str())
                .increment(0);
        }
        metrics::gauge!("circuit_breaker_open", "breaker" => name).set(0.0);
        Self {
            name,
            settings,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                failures: 0,
                opened_at: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The state stays consistent under panics (plain assignments), so a
        // poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[must_use]
    pub fn state(&self) -> BreakerState {
        self.lock().state
    }

    /// Whether a call may go out now.
    pub fn try_acquire(&self, now: Instant) -> bool {
        self.admit(now).is_some()
    }

    /// Lets a call out, saying whether it is the half-open probe, or
    /// refuses it.
    #[must_use]
    pub fn admit(&self, now: Instant) -> Option<Admission> {
        let mut inner = self.lock();
        match inner.state {
            BreakerState::Closed => Some(Admission::Call),
            BreakerState::HalfOpen => None,
            BreakerState::Open => {
                let cooled = inner
                    .opened_at
                    .is_none_or(|at| now.duration_since(at) >= self.settings.open_for);
                if cooled {
                    self.transition(&mut inner, BreakerState::HalfOpen);
                }
                cooled.then_some(Admission::Probe)
            }
        }
    }

    /// Records the outcome of a call that went out.
    pub fn record(&self, success: bool, now: Instant) {
        let mut inner = self.lock();
        if success {
            inner.failures = 0;
            if inner.state != BreakerState::Closed {
                self.transition(&mut inner, BreakerState::Closed);
            }
            return;
        }
        inner.failures = inner.failures.saturating_add(1);
        let trips = inner.state == BreakerState::HalfOpen
            || inner.failures >= self.settings.failure_threshold;
        if trips && inner.state != BreakerState::Open {
            inner.opened_at = Some(now);
            self.transition(&mut inner, BreakerState::Open);
        }
    }

    fn transition(&self, inner: &mut Inner, to: BreakerState) {
        tracing::warn!(
            breaker = self.name,
            from = inner.state.as_str(),
            to = to.as_str(),
            "circuit breaker state change"
        );
        inner.state = to;
        metrics::counter!("circuit_breaker_state_changes_total", "breaker" => self.name, "to" => to.as_str())
            .increment(1);
        metrics::gauge!("circuit_breaker_open", "breaker" => self.name)
            .set(if to == BreakerState::Closed { 0.0 } else { 1.0 });
    }
}

/// A provider behind a circuit breaker.
pub struct GuardedProvider {
    inner: Arc<dyn PaymentProvider>,
    breaker: Arc<CircuitBreaker>,
}

impl GuardedProvider {
    #[must_use]
    pub fn new(inner: Arc<dyn PaymentProvider>, breaker: Arc<CircuitBreaker>) -> Self {
        Self { inner, breaker }
    }
}

/// A probe in flight. If its future is dropped (the client went away and
/// the handler with it) the probe counts as failed, so the breaker opens
/// again and probes after the cool-down instead of staying half-open.
struct PendingProbe<'a> {
    breaker: &'a CircuitBreaker,
    armed: bool,
}

impl Drop for PendingProbe<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.breaker.record(false, Instant::now());
        }
    }
}

#[async_trait]
impl PaymentProvider for GuardedProvider {
    async fn charge(&self, request: &ChargeRequest) -> Result<Charge, ChargeError> {
        let Some(admission) = self.breaker.admit(Instant::now()) else {
            return Err(ChargeError::Unavailable {
                reason: "the payment provider is failing; payments are paused, retry shortly"
                    .to_owned(),
                maybe_charged: false,
            });
        };
        let mut pending = PendingProbe {
            breaker: &self.breaker,
            armed: admission == Admission::Probe,
        };
        let result = self.inner.charge(request).await;
        pending.armed = false;
        let failed = result.as_ref().is_err_and(ChargeError::is_provider_failure);
        self.breaker.record(!failed, Instant::now());
        result
    }

    // A read that changes nothing, needed most while charges fail: not
    // gated by the breaker.
    async fn find_charge(
        &self,
        order_id: &str,
        attempt: u32,
    ) -> Result<Option<FoundCharge>, ChargeError> {
        self.inner.find_charge(order_id, attempt).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(
            "test",
            BreakerSettings {
                failure_threshold: 3,
                open_for: Duration::from_secs(10),
            },
        )
    }

    #[test]
    fn opens_after_the_threshold_of_consecutive_failures() {
        let b = breaker();
        let t = Instant::now();
        b.record(false, t);
        b.record(false, t);
        b.record(true, t);
        b.record(false, t);
        b.record(false, t);
        assert_eq!(b.state(), BreakerState::Closed);
        b.record(false, t);
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.try_acquire(t + Duration::from_secs(9)));
    }

    #[test]
    fn probes_after_the_cool_down_and_closes_on_success() {
        let b = breaker();
        let t = Instant::now();
        for _ in 0..3 {
            b.record(false, t);
        }
        let later = t + Duration::from_secs(10);
        assert!(b.try_acquire(later));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(!b.try_acquire(later), "one probe at a time");
        b.record(true, later);
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.try_acquire(later));
    }

    #[test]
    fn a_failed_probe_opens_it_again() {
        let b = breaker();
        let t = Instant::now();
        for _ in 0..3 {
            b.record(false, t);
        }
        let later = t + Duration::from_secs(10);
        assert!(b.try_acquire(later));
        b.record(false, later);
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.try_acquire(later + Duration::from_secs(5)));
        assert!(b.try_acquire(later + Duration::from_secs(10)));
    }

    #[test]
    fn only_the_half_open_call_is_a_probe() {
        let b = breaker();
        let t = Instant::now();
        assert_eq!(b.admit(t), Some(Admission::Call));
        for _ in 0..3 {
            b.record(false, t);
        }
        assert_eq!(b.admit(t), None);
        assert_eq!(b.admit(t + Duration::from_secs(10)), Some(Admission::Probe));
        assert_eq!(b.admit(t + Duration::from_secs(10)), None);
    }
}
