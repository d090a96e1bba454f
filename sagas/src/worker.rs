//! The saga worker: claims due timers and fires them. Any number of workers
//! can run; `SKIP LOCKED` claims keep them from claiming one timer twice,
//! and each firing is fenced by its claim (held before it starts, renewed
//! while it runs), so a timer whose lease ran out is never fired by its
//! old claimant as well as its new one.

use chrono::{Duration, Utc};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration as StdDuration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use ticketing_eventstore::retry::Backoff;
use ticketing_eventstore::{trace_context, CommandMetadata};
use tracing::Instrument;

use crate::commands::Commands;
use crate::outcome::{SagaError, TaskOutcome};
use crate::payments::PaymentService;
use crate::timers::{self, ClaimedTimer, TimerTask};
use crate::{order_expiry, reservation_repair};

/// How long past the recovery bound (the settle bound and its quiet tenth)
/// a payment may stay open, for the last rounds of its recovery, before
/// `payments_unresolved_past_bound` counts it.
const UNRESOLVED_GRACE: Duration = Duration::minutes(15);

/// Tuning of a saga worker.
#[derive(Debug, Clone, Copy)]
pub struct SagaConfig {
    /// Timers claimed per round.
    pub batch_size: i64,
    /// How long a claim lasts; a timer whose worker died fires again after.
    pub lease: StdDuration,
    /// Sleep between rounds when nothing was due.
    pub poll_interval: StdDuration,
    /// How long an expiry waits for a payment in flight before looking again.
    pub payment_wait: Duration,
}

impl Default for SagaConfig {
    fn default() -> Self {
        Self {
            batch_size: 100,
            lease: StdDuration::from_secs(60),
            poll_interval: StdDuration::from_millis(250),
            payment_wait: Duration::seconds(30),
        }
    }
}

/// What one round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionOutcome {
    /// Timers were claimed; this many fired (were done, not deferred).
    Fired {
        claimed: usize,
        fired: usize,
    },
    EmptyQueue,
}

pub struct SagaWorker {
    id: Uuid,
    pool: PgPool,
    commands: Arc<Commands>,
    payments: Arc<PaymentService>,
    config: SagaConfig,
}

impl SagaWorker {
    #[must_use]
    pub fn new(
        pool: PgPool,
        commands: Arc<Commands>,
        payments: Arc<PaymentService>,
        config: SagaConfig,
    ) -> Self {
        Self {
            id: Uuid::new_v4(),
            pool,
            commands,
            payments,
            config,
        }
    }

    /// Runs rounds until `shutdown`; a round in progress is finished first.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) {
        tracing::info!(worker = %self.id, "saga worker started");
        metrics::counter!("saga_timer_claims_lost_total").increment(0);
        // Exported at 0, so that the first failure is an increase.
        for kind in TimerTask::KINDS {
            metrics::counter!("saga_timer_failures_total", "kind" => kind).increment(0);
            metrics::counter!("saga_timers_fired_total", "kind" => kind).increment(0);
        }
        let mut last_gauge = tokio::time::Instant::now() - StdDuration::from_secs(60);
        const OUTAGE: Backoff =
            Backoff::new(StdDuration::from_millis(250), StdDuration::from_secs(10));
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            let pause = match self.try_execute_task().await {
                Ok(outcome) => {
                    failures = 0;
                    match outcome {
                        ExecutionOutcome::Fired { .. } => StdDuration::ZERO,
                        ExecutionOutcome::EmptyQueue => self.config.poll_interval,
                    }
                }
                Err(error) => {
                    tracing::error!(error.cause_chain = ?error, error.message = %error, "saga round failed");
                    failures = failures.saturating_add(1);
                    OUTAGE.delay(failures - 1)
                }
            };
            if last_gauge.elapsed() >= StdDuration::from_secs(5) {
                last_gauge = tokio::time::Instant::now();
                if let Ok(pending) = timers::pending(&self.pool).await {
                    #[allow(clippy::cast_precision_loss)]
                    metrics::gauge!("saga_timers_pending").set(pending as f64);
                }
                // Recovery settles every payment within its bound; one
                // still open well after it needs a person.
                let settle_within = self.payments.settle_within();
                let bound = Utc::now() - settle_within - settle_within / 10 - UNRESOLVED_GRACE;
                if let Ok(late) = timers::older_than(&self.pool, "payment-recovery", bound).await {
                    #[allow(clippy::cast_precision_loss)]
                    metrics::gauge!("payments_unresolved_past_bound").set(late as f64);
                }
            }
            if !pause.is_zero() {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
        tracing::info!(worker = %self.id, "saga worker stopped");
    }

    /// One round: claim what is due and fire it.
    pub async fn try_execute_task(&self) -> Result<ExecutionOutcome, SagaError> {
        let claimed =
            timers::claim_due(&self.pool, self.config.batch_size, self.config.lease).await?;
        if claimed.is_empty() {
            return Ok(ExecutionOutcome::EmptyQueue);
        }
        let mut fired = 0;
        for timer in &claimed {
            if self.fire(timer).await? {
                fired += 1;
            }
        }
        Ok(ExecutionOutcome::Fired {
            claimed: claimed.len(),
            fired,
        })
    }

    /// Fires one timer in a span that continues the trace of the command
    /// that scheduled it, so its follow-up commands (and their events, and
    /// the projections of those) join the original request's trace.
    async fn fire(&self, timer: &ClaimedTimer) -> Result<bool, SagaError> {
        let span = trace_context::child_of(
            tracing::info_span!(
                "saga.fire",
                otel.kind = "consumer",
                timer = %timer.id,
                kind = timer.task.kind(),
                attempts = timer.attempts
            ),
            timer.traceparent.as_deref(),
        );
        self.fire_in_span(timer).instrument(span).await
    }

    async fn fire_in_span(&self, timer: &ClaimedTimer) -> Result<bool, SagaError> {
        let metadata = CommandMetadata {
            correlation_id: timer
                .correlation_id
                .clone()
                .unwrap_or_else(|| Uuid::new_v4().to_string()),
            causation_id: timer.id.clone(),
            user_id: None,
            traceparent: trace_context::current_traceparent().or_else(|| timer.traceparent.clone()),
        };
        // The batch may have outlived this timer's lease: then another
        // worker may be firing it, and this one must not.
        if !timers::hold(&self.pool, &timer.id, timer.claim, self.config.lease).await? {
            tracing::info!("claim ran out before firing; left to its next claimant");
            metrics::counter!("saga_timer_claims_lost_total").increment(1);
            return Ok(false);
        }
        let outcome = match self.run_held(timer, &metadata).await {
            Ok(outcome) => outcome,
            Err(error) => {
                // Left claimed: it fires again when the lease runs out.
                tracing::warn!(error.cause_chain = ?error, error.message = %error, "saga timer failed; retrying after its lease");
                metrics::counter!("saga_timer_failures_total", "kind" => timer.task.kind())
                    .increment(1);
                return Ok(false);
            }
        };
        match outcome {
            TaskOutcome::Done => {
                let removed = timers::finish(&self.pool, &timer.id, timer.claim).await?;
                metrics::counter!("saga_timers_fired_total", "kind" => timer.task.kind())
                    .increment(1);
                Ok(removed)
            }
            TaskOutcome::Deferred(due_at) => {
                let _ = timers::defer(&self.pool, &timer.id, timer.claim, due_at).await?;
                Ok(false)
            }
        }
    }

    /// Runs the task while renewing its claim, so a task slower than the
    /// lease is not claimed and run again by another worker meanwhile.
    async fn run_held(
        &self,
        timer: &ClaimedTimer,
        metadata: &CommandMetadata,
    ) -> Result<TaskOutcome, SagaError> {
        let run = self.run(timer, metadata);
        tokio::pin!(run);
        let keep = self.keep_claim(timer);
        tokio::pin!(keep);
        tokio::select! {
            outcome = &mut run => outcome,
            // The claim is lost (the store was unreachable for a lease): a
            // command half done cannot be taken back, so it completes; the
            // follow-up commands are idempotent.
            () = &mut keep => run.await,
        }
    }

    /// Renews the claim every third of the lease; returns once it is lost.
    async fn keep_claim(&self, timer: &ClaimedTimer) {
        // (`interval` refuses a zero period.)
        let period = (self.config.lease / 3).max(StdDuration::from_millis(10));
        let mut every = tokio::time::interval(period);
        // The first tick is immediate; the claim was just held.
        let _ = every.tick().await;
        loop {
            let _ = every.tick().await;
            match timers::hold(&self.pool, &timer.id, timer.claim, self.config.lease).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::error!(timer = %timer.id, "claim lost while the timer's task ran");
                    metrics::counter!("saga_timer_claims_lost_total").increment(1);
                    return;
                }
                Err(error) => {
                    tracing::warn!(timer = %timer.id, %error, "could not renew a timer's claim");
                }
            }
        }
    }

    async fn run(
        &self,
        timer: &ClaimedTimer,
        metadata: &CommandMetadata,
    ) -> Result<TaskOutcome, SagaError> {
        match &timer.task {
            TimerTask::OrderExpiry { order_id } => {
                order_expiry::fire(
                    &self.commands,
                    order_id,
                    Utc::now(),
                    self.config.payment_wait,
                    metadata,
                )
                .await
            }
            TimerTask::ReleaseTicket {
                ticket_id,
                order_id,
            } => {
                order_expiry::release(&self.commands, ticket_id, order_id, metadata).await?;
                Ok(TaskOutcome::Done)
            }
            TimerTask::ReservationCheck {
                ticket_id,
                order_id,
            } => reservation_repair::check(&self.commands, ticket_id, order_id, metadata).await,
            TimerTask::PaymentRecovery {
                payment_id,
                order_id,
                token,
                idempotency_key,
                amount_cents,
            } => {
                let recovery = crate::payments::Recovery {
                    payment_id,
                    order_id,
                    token,
                    idempotency_key,
                    amount_cents: *amount_cents,
                    started_at: timer.created_at,
                };
                self.payments.recover(&recovery, metadata).await
            }
        }
    }
}
