use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::{PaymentCommand, PaymentError, PaymentEvent};
use crate::Money;

/// The only currency charged.
const CURRENCY: &str = "usd";

/// Where a payment stands; only `Pending` can still change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PaymentStatus {
    #[default]
    Pending,
    Succeeded,
    Failed,
}

impl PaymentStatus {
    /// The lowercase name used by the API and in serialized form.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "pending",
            PaymentStatus::Succeeded => "succeeded",
            PaymentStatus::Failed => "failed",
        }
    }
}

/// A payment. The default value is a payment that does not exist yet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    applied_events: u64,
    order_id: String,
    user_id: String,
    amount_cents: i64,
    status: PaymentStatus,
    stripe_id: Option<String>,
}

impl Payment {
    #[must_use]
    pub fn exists(&self) -> bool {
        self.applied_events > 0
    }

    /// Empty if the payment does not exist.
    #[must_use]
    pub fn order_id(&self) -> &str {
        &self.order_id
    }

    /// The payer; empty if the payment does not exist.
    #[must_use]
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// Zero cents if the payment does not exist; check [`Payment::exists`] first.
    #[must_use]
    pub fn amount(&self) -> Money {
        Money::from_recorded_cents(self.amount_cents)
    }

    #[must_use]
    pub fn status(&self) -> PaymentStatus {
        self.status
    }

    /// Stripe's charge id, once the payment succeeded.
    #[must_use]
    pub fn stripe_id(&self) -> Option<&str> {
        self.stripe_id.as_deref()
    }

    /// 0 once requested, then +1 for every later event.
    #[must_use]
    pub fn version(&self) -> u64 {
        self.applied_events.saturating_sub(1)
    }
}

impl Aggregate for Payment {
    const TYPE: &'static str = "Payment";
    type Command = PaymentCommand;
    type Event = PaymentEvent;
    type Error = PaymentError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _service: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let event = match command {
            PaymentCommand::Request {
                order_id,
                user_id,
                amount,
            } => {
                if self.exists() {
                    return Err(PaymentError::AlreadyExists);
                }
                PaymentEvent::PaymentRequested {
                    order_id,
                    user_id,
                    amount_cents: amount.cents(),
                    currency: CURRENCY.to_owned(),
                }
            }
            _ if !self.exists() => return Err(PaymentError::NotFound),
            PaymentCommand::Succeed { stripe_id } => match self.status {
                PaymentStatus::Pending => PaymentEvent::PaymentSucceeded { stripe_id },
                // Stripe may report the same success twice.
                PaymentStatus::Succeeded if self.stripe_id() == Some(stripe_id.as_str()) => {
                    return Ok(())
                }
                PaymentStatus::Succeeded | PaymentStatus::Failed => {
                    return Err(PaymentError::AlreadySettled)
                }
            },
            PaymentCommand::Fail { reason } => match self.status {
                PaymentStatus::Pending => PaymentEvent::PaymentFailed { reason },
                PaymentStatus::Succeeded | PaymentStatus::Failed => {
                    return Err(PaymentError::AlreadySettled)
                }
            },
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.applied_events += 1;
        match event {
            PaymentEvent::PaymentRequested {
                order_id,
                user_id,
                amount_cents,
                currency: _,
            } => {
                self.order_id = order_id;
                self.user_id = user_id;
                self.amount_cents = amount_cents;
                self.status = PaymentStatus::Pending;
            }
            PaymentEvent::PaymentSucceeded { stripe_id } => {
                self.status = PaymentStatus::Succeeded;
                self.stripe_id = Some(stripe_id);
            }
            PaymentEvent::PaymentFailed { .. } => self.status = PaymentStatus::Failed,
        }
    }
}
