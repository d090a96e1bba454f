use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::{TicketCommand, TicketError, TicketEvent, DEFAULT_CURRENCY};
use crate::Money;

/// A ticket for resale. The default value is a ticket that does not exist yet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    applied_events: u64,
    title: String,
    price_cents: i64,
    user_id: String,
    /// Empty until created; older snapshots lack it.
    #[serde(default)]
    currency: String,
    reservation: Option<Reservation>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Reservation {
    order_id: String,
    expires_at: DateTime<Utc>,
}

impl Ticket {
    #[must_use]
    pub fn exists(&self) -> bool {
        self.applied_events > 0
    }

    /// Empty if the ticket does not exist.
    #[must_use]
    pub fn title(&self) -> &str {
        &self.title
    }

    /// Zero cents if the ticket does not exist; check [`Ticket::exists`] first.
    #[must_use]
    pub fn price(&self) -> Money {
        Money::from_recorded_cents(self.price_cents)
    }

    /// ISO 4217 code of the price, lowercase; empty if the ticket does not
    /// exist.
    #[must_use]
    pub fn currency(&self) -> &str {
        &self.currency
    }

    /// The owner; empty if the ticket does not exist.
    #[must_use]
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The order currently holding the ticket.
    #[must_use]
    pub fn order_id(&self) -> Option<&str> {
        self.reservation.as_ref().map(|r| r.order_id.as_str())
    }

    /// When the order currently holding the ticket expires.
    #[must_use]
    pub fn reservation_expires_at(&self) -> Option<DateTime<Utc>> {
        self.reservation.as_ref().map(|r| r.expires_at)
    }

    /// 0 once created, then +1 for every later event, reservations included,
    /// so readers can tell which state of the ticket they saw.
    #[must_use]
    pub fn version(&self) -> u64 {
        self.applied_events.saturating_sub(1)
    }
}

impl Aggregate for Ticket {
    const TYPE: &'static str = "Ticket";
    type Command = TicketCommand;
    type Event = TicketEvent;
    type Error = TicketError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _service: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let event = match command {
            TicketCommand::Create {
                title,
                price,
                user_id,
            } => {
                if self.exists() {
                    return Err(TicketError::AlreadyExists);
                }
                TicketEvent::TicketCreated {
                    title: String::from(title),
                    price_cents: price.cents(),
                    user_id,
                    currency: DEFAULT_CURRENCY.to_owned(),
                }
            }
            _ if !self.exists() => return Err(TicketError::NotFound),
            TicketCommand::Update {
                title,
                price,
                user_id,
            } => {
                // Reserved is reported before ownership: the API contract's order.
                if self.reservation.is_some() {
                    return Err(TicketError::Reserved);
                }
                if user_id != self.user_id {
                    return Err(TicketError::NotOwner);
                }
                TicketEvent::TicketUpdated {
                    title: String::from(title),
                    price_cents: price.cents(),
                }
            }
            TicketCommand::Reserve {
                order_id,
                expires_at,
            } => match self.order_id() {
                Some(holder) if holder == order_id => return Ok(()),
                Some(_) => return Err(TicketError::AlreadyReserved),
                None => TicketEvent::TicketReserved {
                    order_id,
                    expires_at,
                },
            },
            TicketCommand::Release { order_id } => {
                // A stale order must not free someone else's reservation.
                if self.order_id() != Some(order_id.as_str()) {
                    return Ok(());
                }
                TicketEvent::TicketReleased { order_id }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.applied_events += 1;
        match event {
            TicketEvent::TicketCreated {
                title,
                price_cents,
                user_id,
                currency,
            } => {
                self.title = title;
                self.price_cents = price_cents;
                self.user_id = user_id;
                self.currency = currency;
            }
            TicketEvent::TicketUpdated { title, price_cents } => {
                self.title = title;
                self.price_cents = price_cents;
            }
            TicketEvent::TicketReserved {
                order_id,
                expires_at,
            } => {
                self.reservation = Some(Reservation {
                    order_id,
                    expires_at,
                });
            }
            TicketEvent::TicketReleased { .. } => self.reservation = None,
        }
    }
}
