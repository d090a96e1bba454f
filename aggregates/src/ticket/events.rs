use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

/// What happened to a [`Ticket`](crate::Ticket); the stored history.
///
/// Versions: `TicketCreated` 1.1 added `currency`; events stored at 1.0
/// are lifted by [`upcasters`](super::upcasters) when loaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TicketEvent {
    TicketCreated {
        title: String,
        price_cents: i64,
        user_id: String,
        /// ISO 4217, lowercase (`usd`), of `price_cents`.
        currency: String,
    },
    TicketUpdated {
        title: String,
        price_cents: i64,
    },
    /// `expires_at` is the order's deadline, kept so a repair process can
    /// release a reservation whose order was never recorded.
    TicketReserved {
        order_id: String,
        expires_at: DateTime<Utc>,
    },
    TicketReleased {
        order_id: String,
    },
}

impl DomainEvent for TicketEvent {
    fn event_type(&self) -> String {
        match self {
            TicketEvent::TicketCreated { .. } => "TicketCreated",
            TicketEvent::TicketUpdated { .. } => "TicketUpdated",
            TicketEvent::TicketReserved { .. } => "TicketReserved",
            TicketEvent::TicketReleased { .. } => "TicketReleased",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        match self {
            TicketEvent::TicketCreated { .. } => super::upcasters::TICKET_CREATED_VERSION,
            _ => "1.0",
        }
        .to_owned()
    }
}
