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
//!    timeout, a 5xx, a 409 or 429, or a call not sent while the recovery
//!    timer may already have sent it) is left to the timer, which re-sends
//!    the same charge, looks it up at the provider when the answer is still
//!    unknown, and gives the payment up once it is older than
//!    `settle_within` with no charge found (before Stripe forgets the key).
//! 5. Nothing is recorded as failed while a charge may exist, and an order
//!    takes only the payment in flight, so a late success never completes
//!    an order whose attempt failed.

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
use crate::payment_provider::{
    Charge, ChargeError, ChargeRequest, ChargeState, FoundCharge, PaymentProvider,
};
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
    /// Payments started per order at most (declined cards included).
    max_attempts: u32,
}

/// Payments an order may start by default: enough for a buyer to correct
/// a card a few times, too few to test stolen cards against one order.
pub const DEFAULT_MAX_PAYMENT_ATTEMPTS: u32 = 5;

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

/// The longest settle bound: the last recovery rounds must end before
/// Stripe forgets the key.
pub const MAX_SETTLE_WITHIN: Duration = Duration::hours(20);

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
        // Exported at 0, so that the first one is an increase.
        metrics::counter!("payments_charged_without_order_total").increment(0);
        Self {
            commands,
            provider,
            pool,
            recovery_after,
            settle_within: DEFAULT_SETTLE_WITHIN,
            max_attempts: DEFAULT_MAX_PAYMENT_ATTEMPTS,
        }
    }

    /// Caps the payments started per order (see
    /// [`DEFAULT_MAX_PAYMENT_ATTEMPTS`]); at least one.
    #[must_use]
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts.max(1);
        self
    }

    /// Bounds how long a payment stays unresolved (see
    /// [`DEFAULT_SETTLE_WITHIN`]); capped at [`MAX_SETTLE_WITHIN`].
    #[must_use]
    pub fn with_settle_within(mut self, settle_within: Duration) -> Self {
        if settle_within > MAX_SETTLE_WITHIN {
            tracing::warn!(
                requested_seconds = settle_within.num_seconds(),
                "payment settle bound capped below Stripe's 24 h idempotency window"
            );
        }
        self.settle_within = settle_within.min(MAX_SETTLE_WITHIN);
        self
    }

    /// How long after it started a payment is settled at the latest.
    #[must_use]
    pub fn settle_within(&self) -> Duration {
        self.settle_within
    }

    /// Pays for the order; answers once the order is complete.
    #[tracing::instrument(skip_all, fields(order_id = %request.order_id, payment_id = %request.payment_id))]
    pub async fn pay(
        &self,
        request: &PayRequest,
        metadata: &CommandMetadata,
    ) -> Result<Paid, PayError> {
        // Checked before anything is recorded: what a client sends in place
        // of a token may be a card number, and is never echoed nor kept.
        if !is_card_token(&request.token) {
            tracing::info!("payment refused: the token is not a card token");
            return Err(PayError::Declined(INVALID_TOKEN.to_owned()));
        }
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
                    max_attempts: self.max_attempts,
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
        // Both fresh: no earlier request can have used this key (the
        // recovery timer still can: see `decide`).
        let first_call = !started.events.is_empty() && requested;
        let attempt = started.aggregate.payment_attempts();
        let charge = ChargeRequest {
            amount_cents,
            currency: CURRENCY.to_owned(),
            token: request.token.clone(),
            idempotency_key: idempotency_key(&request.order_id, attempt),
            order_id: request.order_id.clone(),
            attempt,
        };
        let outcome = self.provider.charge(&charge).await;
        let decision = self.decide(&outcome, first_call, &request.payment_id).await;
        match self
            .settle(&request.payment_id, &request.order_id, &decision, metadata)
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

    /// What the request's own charge outcome settles. A call that was not
    /// sent (the breaker failed fast, the provider refused before running
    /// it) proves nothing if the recovery timer may have sent the same key
    /// meanwhile (it is due before the request's commits land when they
    /// are slow): only a timer that never fired, removed here, guarantees
    /// that no charge exists and none will be made under the key.
    async fn decide(
        &self,
        outcome: &Result<Charge, ChargeError>,
        first_call: bool,
        payment_id: &str,
    ) -> Decision {
        match outcome {
            Ok(charge) => Decision::Charged(charge.clone()),
            Err(error @ (ChargeError::Declined(_) | ChargeError::Invalid(_))) => {
                Decision::Refused(error.to_string())
            }
            Err(error @ ChargeError::Unavailable { maybe_charged, .. }) => {
                if *maybe_charged || !first_call {
                    return Decision::Unknown;
                }
                let recovery = timers::payment_recovery_id(payment_id);
                match timers::cancel_unfired(&self.pool, &recovery).await {
                    Ok(true) => Decision::Refused(error.to_string()),
                    Ok(false) => Decision::Unknown,
                    Err(failure) => {
                        tracing::warn!(payment_id, %failure, "could not take back a payment's recovery timer");
                        Decision::Unknown
                    }
                }
            }
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

    /// Applies a decision to the payment and the order.
    async fn settle(
        &self,
        payment_id: &str,
        order_id: &str,
        decision: &Decision,
        metadata: &CommandMetadata,
    ) -> Result<Settled, SagaError> {
        match decision {
            Decision::Charged(charge) => {
                let recorded = self
                    .record_payment(
                        payment_id,
                        PaymentCommand::Succeed {
                            stripe_id: charge.id.clone(),
                        },
                        metadata,
                    )
                    .await?;
                if recorded != PaymentStatus::Succeeded {
                    return Ok(charged_without_order(payment_id, order_id, &charge.id));
                }
                let completed = match self
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
                {
                    Ok(completed) => completed,
                    Err(CommandError::Rejected(rejection)) => {
                        tracing::error!(payment_id, order_id, %rejection, "the order refused a payment that was charged");
                        return Ok(charged_without_order(payment_id, order_id, &charge.id));
                    }
                    Err(other) => return Err(SagaError::Order(other)),
                };
                tracing::info!(payment_id, order_id, charge = %charge.id, "payment succeeded");
                Ok(Settled::Completed {
                    order_version: completed.aggregate.version(),
                })
            }
            Decision::Unknown => Ok(Settled::Unknown),
            Decision::Refused(reason) => {
                let _ = self
                    .record_payment(
                        payment_id,
                        PaymentCommand::Fail {
                            reason: reason.clone(),
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
                tracing::info!(payment_id, order_id, reason, "payment failed");
                Ok(Settled::Failed)
            }
        }
    }

    /// Records an outcome; answers the payment's status afterwards (another
    /// outcome if it was settled before).
    async fn record_payment(
        &self,
        payment_id: &str,
        command: PaymentCommand,
        metadata: &CommandMetadata,
    ) -> Result<PaymentStatus, SagaError> {
        match self
            .commands
            .payments
            .execute(payment_id, command, metadata)
            .await
        {
            Ok(executed) => Ok(executed.aggregate.status()),
            // Settled before (a recovery racing the request): the status
            // it was settled with decides.
            Err(CommandError::Rejected(PaymentError::AlreadySettled)) => Ok(self
                .commands
                .payments
                .load(payment_id)
                .await
                .map_err(SagaError::Payment)?
                .status()),
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
    /// Re-sends the charge under its key; if Stripe's answer is still no
    /// answer (a timeout, or a 5xx it replays for the key forever), looks
    /// the charge up by its metadata. Once the payment is older than
    /// `settle_within` the key is no longer sent, and a tenth of that later
    /// with no charge found the payment is failed for good (its key is
    /// never sent again, so it cannot charge later).
    pub async fn recover(
        &self,
        recovery: &Recovery<'_>,
        metadata: &CommandMetadata,
    ) -> Result<TaskOutcome, SagaError> {
        let Recovery {
            payment_id,
            order_id,
            ..
        } = *recovery;
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
        let attempt = attempt_of(recovery.idempotency_key);
        let age = Utc::now() - recovery.started_at;
        // Past the bound the key is no longer sent, so that when no charge
        // is found a while later, none can be in flight either.
        let decision = if age < self.settle_within {
            let charge = ChargeRequest {
                amount_cents: recovery.amount_cents,
                currency: CURRENCY.to_owned(),
                token: recovery.token.to_owned(),
                idempotency_key: recovery.idempotency_key.to_owned(),
                order_id: order_id.to_owned(),
                attempt: attempt.unwrap_or_default(),
            };
            let outcome = self.provider.charge(&charge).await;
            // Never "first": the request may have reached the provider.
            match self.decide(&outcome, false, payment_id).await {
                Decision::Unknown => match attempt {
                    Some(attempt) => self.reconcile(recovery, attempt, false).await,
                    None => Decision::Unknown,
                },
                known => known,
            }
        } else {
            let quiet = self.settle_within / 10;
            match attempt {
                Some(attempt) => {
                    let give_up = age >= self.settle_within + quiet;
                    self.reconcile(recovery, attempt, give_up).await
                }
                None => Decision::Unknown,
            }
        };
        match self
            .settle(payment_id, order_id, &decision, metadata)
            .await?
        {
            Settled::Completed { .. } | Settled::Failed => Ok(TaskOutcome::Done),
            Settled::Unknown => Ok(TaskOutcome::Deferred(Utc::now() + self.recovery_after)),
        }
    }

    /// Looks the attempt's charge up at the provider; with `give_up`, no
    /// charge found fails the payment for good. Only given once the key has
    /// not been sent for a tenth of the bound (12 min by default): longer
    /// than Stripe takes to index a charge for search, or to finish a
    /// request it received.
    async fn reconcile(&self, recovery: &Recovery<'_>, attempt: u32, give_up: bool) -> Decision {
        let (payment_id, order_id) = (recovery.payment_id, recovery.order_id);
        let found = match self.provider.find_charge(order_id, attempt).await {
            Ok(found) => found,
            Err(error) => {
                // Nothing proves there is no charge: try again later (the
                // unresolved-payments alert says if this lasts).
                tracing::warn!(payment_id, order_id, %error, "could not look the charge up");
                return Decision::Unknown;
            }
        };
        let decision = match found {
            Some(FoundCharge {
                id,
                state: ChargeState::Succeeded,
            }) => Decision::Charged(Charge { id }),
            Some(FoundCharge {
                state: ChargeState::Failed,
                ..
            }) => Decision::Refused("The card was declined".to_owned()),
            Some(FoundCharge {
                state: ChargeState::Pending,
                ..
            }) => Decision::Unknown,
            None if give_up => Decision::Refused(format!(
                "no charge made within {} s; given up",
                self.settle_within.num_seconds()
            )),
            None => Decision::Unknown,
        };
        let outcome = match &decision {
            Decision::Charged(_) => "charged",
            Decision::Refused(_) => "not_charged",
            Decision::Unknown => return decision,
        };
        tracing::info!(
            payment_id,
            order_id,
            outcome,
            "payment reconciled with the provider"
        );
        metrics::counter!("payments_reconciled_total", "outcome" => outcome).increment(1);
        decision
    }
}

/// A recovery timer's task, and when its payment started.
#[derive(Debug, Clone, Copy)]
pub struct Recovery<'a> {
    pub payment_id: &'a str,
    pub order_id: &'a str,
    pub token: &'a str,
    pub idempotency_key: &'a str,
    pub amount_cents: i64,
    pub started_at: DateTime<Utc>,
}

/// The answer given for a payment token that is not a card token.
const INVALID_TOKEN: &str = "The payment token is not valid";

/// A Stripe card token (`tok_` and letters, digits, underscores): the only
/// payment source accepted.
fn is_card_token(token: &str) -> bool {
    token.strip_prefix("tok_").is_some_and(|rest| {
        !rest.is_empty()
            && rest.len() <= 200
            && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// A charge was made for a payment the order will not take (it was settled
/// otherwise first): money taken without a ticket, for a person to refund.
fn charged_without_order(payment_id: &str, order_id: &str, charge_id: &str) -> Settled {
    tracing::error!(
        payment_id,
        order_id,
        charge = charge_id,
        "a charge was made for a payment the order did not take; refund it"
    );
    metrics::counter!("payments_charged_without_order_total").increment(1);
    Settled::Failed
}

/// What a charge outcome (or a lookup) settles.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision {
    Charged(Charge),
    /// No charge was made nor can be under the attempt's key.
    Refused(String),
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    Completed { order_version: u64 },
    Failed,
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_card_tokens_are_accepted() {
        for token in ["tok_visa", "tok_chargeDeclined", "tok_1NxY2z"] {
            assert!(is_card_token(token), "{token}");
        }
        for token in [
            "4242424242424242",
            "tok_",
            "tok_4242 4242",
            "pm_card_visa",
            "",
        ] {
            assert!(!is_card_token(token), "{token}");
        }
    }

    #[test]
    fn the_attempt_is_read_back_from_its_key() {
        let key = idempotency_key("5e0cdb2e-5d4f-4d0e-9d8e-0b7f1f0f0c11", 3);
        assert_eq!(attempt_of(&key), Some(3));
        assert_eq!(attempt_of("no-attempt"), None);
    }
}
