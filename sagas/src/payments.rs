//! The payment process manager: order → payment → charge → outcome.
//!
//! 1. `StartPayment` moves the order to `awaiting:payment` (one payment at a
//!    time; a cancelled, lapsed or paid order refuses). The same commit
//!    writes a recovery timer holding what is needed to re-send the charge,
//!    so a crash at any later step is settled by the saga worker.
//! 2. The Payment aggregate records the request.
//! 3. The charge goes to the provider with the idempotency key
//!    `<order id>:<attempt>`: a retried or recovered attempt reuses it and
//!    can never charge twice; a new attempt after a decline gets a new key
//!    (Stripe would otherwise replay the decline).
//! 4. A definite answer settles the payment and the order (complete, or
//!    payable again) and removes the recovery timer. An unknown outcome (a
//!    timeout, a 5xx) is left to the timer, which re-sends the same charge.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use cqrs_es::EventEnvelope;
use sqlx::{PgConnection, PgPool};
use std::sync::Arc;
use ticketing_aggregates::{
    Money, Order, OrderCommand, OrderError, OrderEvent, PaymentCommand, PaymentError, PaymentStatus,
};
use ticketing_eventstore::{CommandError, CommandMetadata, CommitEffect};

use crate::commands::Commands;
use crate::outcome::{SagaError, TaskOutcome};
use crate::payment_provider::{Charge, ChargeError, ChargeRequest, PaymentProvider};
use crate::timers::{self, NewTimer, TimerTask};

/// The only currency charged.
const CURRENCY: &str = "usd";

/// Why a payment did not complete the order.
#[derive(Debug, thiserror::Error)]
pub enum PayError {
    /// The order refused: not found, not the owner's, cancelled, paid, busy.
    #[error(transparent)]
    Order(CommandError<OrderError>),
    /// The card was declined or the token refused (the processor's message).
    #[error("{0}")]
    Declined(String),
    /// The processor is unreachable or paused by the circuit breaker.
    #[error("{0}")]
    Unavailable(String),
    #[error("payment failed unexpectedly")]
    Unexpected(#[source] SagaError),
}

impl From<SagaError> for PayError {
    fn from(error: SagaError) -> Self {
        Self::Unexpected(error)
    }
}

/// A payment that completed its order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paid {
    pub payment_id: String,
    /// The completed order's version, for the caller's consistency token.
    pub order_version: u64,
}

/// A payment asked for by a buyer.
#[derive(Debug, Clone)]
pub struct PayRequest {
    pub order_id: String,
    pub user_id: String,
    pub token: String,
    /// Fixed by the caller (from its Idempotency-Key when there is one), so
    /// a repeated request continues the same payment.
    pub payment_id: String,
}

pub struct PaymentService {
    commands: Arc<Commands>,
    provider: Arc<dyn PaymentProvider>,
    pool: PgPool,
    /// When the recovery timer fires if the request did not settle the
    /// payment; longer than the provider's timeout.
    recovery_after: Duration,
    /// How long after it started a payment is settled at the latest.
    settle_within: Duration,
}

/// Writes the recovery timer of a payment with the event that starts it.
struct RecoveryTimer {
    token: String,
    amount_cents: i64,
    due_at: DateTime<Utc>,
}

#[async_trait]
impl CommitEffect<Order> for RecoveryTimer {
    async fn write(
        &self,
        tx: &mut PgConnection,
        events: &[EventEnvelope<Order>],
    ) -> Result<(), sqlx::Error> {
        for envelope in events {
            if let OrderEvent::OrderPaymentStarted {
                payment_id,
                attempt,
            } = &envelope.payload
            {
                let task = TimerTask::PaymentRecovery {
                    payment_id: payment_id.clone(),
                    order_id: envelope.aggregate_id.clone(),
                    token: self.token.clone(),
                    idempotency_key: idempotency_key(&envelope.aggregate_id, *attempt),
                    amount_cents: self.amount_cents,
                };
                let timer = NewTimer {
                    task,
                    due_at: self.due_at,
                    correlation_id: envelope.metadata.get("correlation_id").cloned(),
                    traceparent: envelope.metadata.get("traceparent").cloned(),
                };
                timers::schedule(tx, &timer).await?;
            }
        }
        Ok(())
    }
}

/// How long after it started an unresolved payment is given up when the
/// provider has no charge for it: well past Stripe's search lag (about a
/// minute, an hour during its incidents) and well before Stripe forgets the
/// idempotency key (24 h), after which a re-send could charge afresh.
pub const DEFAULT_SETTLE_WITHIN: Duration = Duration::hours(2);

fn idempotency_key(order_id: &str, attempt: u32) -> String {
    format!("{order_id}:{attempt}")
}

/// The attempt an [`idempotency_key`] was made for.
fn attempt_of(idempotency_key: &str) -> Option<u32> {
    idempotency_key.rsplit_once(':')?.1.parse().ok()
}

impl PaymentService {
    #[must_use]
    pub fn new(
        commands: Arc<Commands>,
        provider: Arc<dyn PaymentProvider>,
        pool: PgPool,
        recovery_after: Duration,
    ) -> Self {
        Self {
            commands,
            provider,
            pool,
            recovery_after,
            settle_within: DEFAULT_SETTLE_WITHIN,
        }
    }

    /// Bounds how long a payment stays unresolved (see [`DEFAULT_SETTLE_WITHIN`]).
    #[must_use]
    pub fn with_settle_within(mut self, settle_within: Duration) -> Self {
        self.settle_within = settle_within;
        self
    }

    /// Pays for the order; answers once the order is complete.
    #[tracing::instrument(skip_all, fields(order_id = %request.order_id, payment_id = %request.payment_id))]
    pub async fn pay(
        &self,
        request: &PayRequest,
        metadata: &CommandMetadata,
    ) -> Result<Paid, PayError> {
        let order = self
            .commands
            .orders
            .load(&request.order_id)
            .await
            .map_err(PayError::Order)?;
        let amount_cents = order.ticket().map_or(0, |t| t.price_cents);
        let recovery = RecoveryTimer {
            token: request.token.clone(),
            amount_cents,
            due_at: Utc::now() + self.recovery_after,
        };
        let started = self
            .commands
            .orders
            .execute_with(
                &request.order_id,
                OrderCommand::StartPayment {
                    payment_id: request.payment_id.clone(),
                    user_id: request.user_id.clone(),
                    now: Utc::now(),
                },
                metadata,
                Some(&recovery),
            )
            .await
            .map_err(PayError::Order)?;
        let requested = self
            .request_payment(
                &request.payment_id,
                &request.order_id,
                &started.aggregate,
                metadata,
            )
            .await?;
        // Both fresh: no earlier call can have used this key.
        let first_call = !started.events.is_empty() && requested;
        let charge = ChargeRequest {
            amount_cents,
            currency: CURRENCY.to_owned(),
            token: request.token.clone(),
            idempotency_key: idempotency_key(
                &request.order_id,
                started.aggregate.payment_attempts(),
            ),
            order_id: request.order_id.clone(),
            attempt: started.aggregate.payment_attempts(),
        };
        let outcome = self.provider.charge(&charge).await;
        match self
            .settle(&request.payment_id, &request.order_id, &outcome, first_call, metadata)
            .await?
        {
            Settled::Completed { order_version } => {
                self.forget_recovery(&request.payment_id).await;
                Ok(Paid {
                    payment_id: request.payment_id.clone(),
                    order_version,
                })
            }
            Settled::Failed => {
                self.forget_recovery(&request.payment_id).await;
                Err(match outcome {
                    Err(ChargeError::Unavailable { .. }) => PayError::Unavailable(
                        "The payment provider is unavailable; no charge was made, retry shortly"
                            .to_owned(),
                    ),
                    Err(error) => PayError::Declined(error.to_string()),
                    Ok(_) => PayError::Declined("The payment was refused".to_owned()),
                })
            }
            Settled::Unknown => Err(PayError::Unavailable(
                "The payment provider did not answer in time; the payment will be settled shortly, check the order"
                    .to_owned(),
            )),
        }
    }

    /// Records the payment; `true` if this call created it.
    async fn request_payment(
        &self,
        payment_id: &str,
        order_id: &str,
        order: &Order,
        metadata: &CommandMetadata,
    ) -> Result<bool, SagaError> {
        let amount = Money::from_cents(order.ticket().map_or(0, |t| t.price_cents))?;
        match self
            .commands
            .payments
            .execute(
                payment_id,
                PaymentCommand::Request {
                    order_id: order_id.to_owned(),
                    user_id: order.user_id().to_owned(),
                    amount,
                },
                metadata,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(CommandError::Rejected(PaymentError::AlreadyExists)) => Ok(false),
            Err(other) => Err(SagaError::Payment(other)),
        }
    }

    /// Applies a charge outcome to the payment and the order.
    async fn settle(
        &self,
        payment_id: &str,
        order_id: &str,
        outcome: &Result<Charge, ChargeError>,
        first_call: bool,
        metadata: &CommandMetadata,
    ) -> Result<Settled, SagaError> {
        match outcome {
            Ok(charge) => {
                self.record_payment(
                    payment_id,
                    PaymentCommand::Succeed {
                        stripe_id: charge.id.clone(),
                    },
                    metadata,
                )
                .await?;
                let completed = self
                    .commands
                    .orders
                    .execute(
                        order_id,
                        OrderCommand::Complete {
                            payment_id: payment_id.to_owned(),
                        },
                        metadata,
                    )
                    .await
                    .map_err(SagaError::Order)?;
                tracing::info!(payment_id, order_id, charge = %charge.id, "payment succeeded");
                Ok(Settled::Completed {
                    order_version: completed.aggregate.version(),
                })
            }
            Err(ChargeError::Unavailable { maybe_charged, .. })
                if *maybe_charged || !first_call =>
            {
                Ok(Settled::Unknown)
            }
            Err(error) => {
                self.record_payment(
                    payment_id,
                    PaymentCommand::Fail {
                        reason: error.to_string(),
                    },
                    metadata,
                )
                .await?;
                self.commands
                    .orders
                    .execute(
                        order_id,
                        OrderCommand::FailPayment {
                            payment_id: payment_id.to_owned(),
                        },
                        metadata,
                    )
                    .await
                    .map_err(SagaError::Order)?;
                tracing::info!(payment_id, order_id, %error, "payment failed");
                Ok(Settled::Failed)
            }
        }
    }

    async fn record_payment(
        &self,
        payment_id: &str,
        command: PaymentCommand,
        metadata: &CommandMetadata,
    ) -> Result<(), SagaError> {
        match self
            .commands
            .payments
            .execute(payment_id, command, metadata)
            .await
        {
            Ok(_) => Ok(()),
            // Settled before with the same outcome (a recovery racing the
            // request): nothing left to do.
            Err(CommandError::Rejected(PaymentError::AlreadySettled)) => Ok(()),
            Err(other) => Err(SagaError::Payment(other)),
        }
    }

    async fn forget_recovery(&self, payment_id: &str) {
        // Harmless if it stays: recovery finds the payment settled.
        if let Err(error) =
            timers::cancel(&self.pool, &timers::payment_recovery_id(payment_id)).await
        {
            tracing::warn!(payment_id, %error, "could not remove a payment's recovery timer");
        }
    }

    /// Fires a recovery timer: settles a payment the request left open.
    #[allow(clippy::too_many_arguments)]
    pub async fn recover(
        &self,
        payment_id: &str,
        order_id: &str,
        token: &str,
        idempotency_key: &str,
        amount_cents: i64,
        metadata: &CommandMetadata,
    ) -> Result<TaskOutcome, SagaError> {
        let payment = self
            .commands
            .payments
            .load(payment_id)
            .await
            .map_err(SagaError::Payment)?;
        if payment.exists() && payment.status() != PaymentStatus::Pending {
            return Ok(TaskOutcome::Done);
        }
        let order = self
            .commands
            .orders
            .load(order_id)
            .await
            .map_err(SagaError::Order)?;
        if !payment.exists() {
            let _ = self
                .request_payment(payment_id, order_id, &order, metadata)
                .await?;
        }
        let charge = ChargeRequest {
            amount_cents,
            currency: CURRENCY.to_owned(),
            token: token.to_owned(),
            idempotency_key: idempotency_key.to_owned(),
            order_id: order_id.to_owned(),
            attempt: attempt_of(idempotency_key).unwrap_or_default(),
        };
        let outcome = self.provider.charge(&charge).await;
        // Never "first": the request may have reached the provider.
        match self
            .settle(payment_id, order_id, &outcome, false, metadata)
            .await?
        {
            Settled::Completed { .. } | Settled::Failed => Ok(TaskOutcome::Done),
            Settled::Unknown => Ok(TaskOutcome::Deferred(Utc::now() + self.recovery_after)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    Completed { order_version: u64 },
    Failed,
    Unknown,
}
