//! Wire types of ticketing: what other services read from Kafka.
//!
//! Every event committed to the event store is published by the relay as one
//! JSON [`Envelope`] on the topic of its aggregate ([`topics`]). The envelope
//! carries the identity and position of the event (`eventId`, `aggregateId`,
//! `sequence`, `globalPosition`, …), its `eventType` and `schemaVersion`, and
//! the payload in `data`. The payload types here are written for consumers
//! and decoupled from the aggregates' internal events: the relay converts
//! one into the other, so an internal refactoring cannot silently change the
//! contract.
//!
//! Conventions:
//! - field names are camelCase;
//! - money is integer cents (`priceCents`, `amountCents`) in US dollars,
//!   so no consumer ever rounds a float;
//! - `sequence` is the aggregate's version counter, starting at 1 for the
//!   event that created it (the API's `version` of an aggregate is
//!   `sequence - 1`); consumers apply an aggregate's events in `sequence`
//!   order and drop an `eventId` they have already seen, since the relay
//!   publishes at least once;
//! - the major version in a topic name (`.v1`) changes only with an
//!   incompatible schema change; compatible additions bump the minor
//!   `schemaVersion` of the event.
//!
//! This crate does no I/O. Decoding a message from the tickets topic:
//!
//! ```
//! use ticketing_schemas::{Envelope, TicketEventV1};
//!
//! let json = r#"{
//!   "eventId": "0b7f7c46-3f4e-4a57-9d0e-5d6f8a1f2b3c",
//!   "schemaVersion": "1.0.0",
//!   "aggregateType": "Ticket",
//!   "aggregateId": "t-1",
//!   "sequence": 1,
//!   "globalPosition": 42,
//!   "timestamp": "2026-11-21T10:00:00Z",
//!   "correlationId": "req-1",
//!   "causationId": "req-1",
//!   "eventType": "TicketCreated",
//!   "data": { "title": "Concert", "priceCents": 1999, "userId": "u-1" }
//! }"#;
//! let envelope: Envelope<TicketEventV1> = serde_json::from_str(json).unwrap();
//! match &envelope.event {
//!     TicketEventV1::TicketCreated(created) => assert_eq!(created.price_cents, 1999),
//!     other => panic!("unexpected {other:?}"),
//! }
//! assert_eq!(envelope.event_type(), "TicketCreated");
//! ```

mod envelope;
mod order;
mod payment;
pub mod registry;
mod ticket;

pub use envelope::{Envelope, WireEvent};
pub use order::{
    OrderCancelledV1, OrderCompletedV1, OrderEventV1, OrderExpiredV1, OrderPaymentFailedV1,
    OrderPaymentStartedV1, OrderPlacedV1, OrderStatusV1, OrderTicketV1,
};
pub use payment::{PaymentEventV1, PaymentFailedV1, PaymentRequestedV1, PaymentSucceededV1};
pub use ticket::{
    TicketCreatedV1, TicketEventV1, TicketReleasedV1, TicketReservedV1, TicketUpdatedV1,
};

/// Default topic names, one per aggregate type.
pub mod topics {
    pub const TICKETS: &str = "ticketing.tickets.v1";
    pub const ORDERS: &str = "ticketing.orders.v1";
    pub const PAYMENTS: &str = "ticketing.payments.v1";

    /// Appended to a topic's name to name its dead-letter topic.
    pub const DLQ_SUFFIX: &str = ".dlq";

    /// The dead-letter topic of `topic`.
    #[must_use]
    pub fn dead_letter_topic(topic: &str) -> String {
        format!("{topic}{DLQ_SUFFIX}")
    }
}

/// Kafka header names set on every message, so consumers can route or
/// filter without parsing the body.
pub mod headers {
    pub const EVENT_TYPE: &str = "event-type";
    pub const SCHEMA_VERSION: &str = "schema-version";
    pub const EVENT_ID: &str = "event-id";
    pub const CORRELATION_ID: &str = "correlation-id";
    /// W3C trace context of the command that caused the event; only set
    /// when the command had one.
    pub const TRACEPARENT: &str = "traceparent";

    /// Added to a message copied to its topic's dead-letter topic.
    pub mod dlq {
        /// The error that made the message undeliverable, with its causes.
        pub const ERROR: &str = "dlq-error";
        pub const ORIGIN_TOPIC: &str = "dlq-origin-topic";
        pub const ORIGIN_PARTITION: &str = "dlq-origin-partition";
        pub const ORIGIN_OFFSET: &str = "dlq-origin-offset";
    }
}

#[cfg(test)]
mod tests;
