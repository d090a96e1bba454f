//! From a Kafka message (or an envelope re-read from the event store) to a
//! typed event. Decoding is pure, so a failure here is final.

use ticketing_relay::{Cursor, FoldEvent, Topics, WirePayload};
use ticketing_schemas::{Envelope, OrderEventV1, PaymentEventV1, TicketEventV1, WireEvent};

/// The aggregate types projected, one per topic and one view each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AggregateKind {
    Ticket,
    Order,
    Payment,
}

impl AggregateKind {
    /// Which aggregate `topic` carries, under `topics`.
    pub fn of_topic(topics: &Topics, topic: &str) -> Option<AggregateKind> {
        if topic == topics.tickets {
            Some(AggregateKind::Ticket)
        } else if topic == topics.orders {
            Some(AggregateKind::Order)
        } else if topic == topics.payments {
            Some(AggregateKind::Payment)
        } else {
            None
        }
    }

    /// The `aggregateType` of its envelopes and of its rows in `events`.
    pub fn type_name(self) -> &'static str {
        match self {
            AggregateKind::Ticket => TicketEventV1::AGGREGATE_TYPE,
            AggregateKind::Order => OrderEventV1::AGGREGATE_TYPE,
            AggregateKind::Payment => PaymentEventV1::AGGREGATE_TYPE,
        }
    }
}

/// Why a payload is not an event this worker can apply.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("message on topic {0} that this worker does not consume")]
    UnknownTopic(String),
    #[error("message without a payload")]
    EmptyPayload,
    #[error("not a {expected} envelope")]
    Json {
        expected: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("envelope of aggregate type {found} on the {expected} topic")]
    WrongAggregateType {
        expected: &'static str,
        found: String,
    },
    #[error("sequence {0} out of range (events are numbered from 1)")]
    BadSequence(u64),
}

/// One decoded event of any projected aggregate.
#[derive(Debug, Clone, PartialEq)]
pub enum ProjectedEvent {
    Ticket(Envelope<TicketEventV1>),
    Order(Envelope<OrderEventV1>),
    Payment(Envelope<PaymentEventV1>),
}

impl ProjectedEvent {
    /// Decodes `payload` as an envelope of `kind`.
    pub fn decode(kind: AggregateKind, payload: &[u8]) -> Result<ProjectedEvent, DecodeError> {
        if payload.is_empty() {
            return Err(DecodeError::EmptyPayload);
        }
        let event = match kind {
            AggregateKind::Ticket => ProjectedEvent::Ticket(envelope(payload)?),
            AggregateKind::Order => ProjectedEvent::Order(envelope(payload)?),
            AggregateKind::Payment => ProjectedEvent::Payment(envelope(payload)?),
        };
        if event.aggregate_type() != kind.type_name() {
            return Err(DecodeError::WrongAggregateType {
                expected: kind.type_name(),
                found: event.aggregate_type().to_owned(),
            });
        }
        let sequence = event.raw_sequence();
        if sequence == 0 || i64::try_from(sequence).is_err() {
            return Err(DecodeError::BadSequence(sequence));
        }
        Ok(event)
    }

    /// Decodes a message of `topic`.
    pub fn from_message(
        topics: &Topics,
        topic: &str,
        payload: Option<&[u8]>,
    ) -> Result<ProjectedEvent, DecodeError> {
        let kind = AggregateKind::of_topic(topics, topic)
            .ok_or_else(|| DecodeError::UnknownTopic(topic.to_owned()))?;
        ProjectedEvent::decode(kind, payload.unwrap_or_default())
    }

    pub fn kind(&self) -> AggregateKind {
        match self {
            ProjectedEvent::Ticket(_) => AggregateKind::Ticket,
            ProjectedEvent::Order(_) => AggregateKind::Order,
            ProjectedEvent::Payment(_) => AggregateKind::Payment,
        }
    }

    pub fn aggregate_id(&self) -> &str {
        match self {
            ProjectedEvent::Ticket(e) => &e.aggregate_id,
            ProjectedEvent::Order(e) => &e.aggregate_id,
            ProjectedEvent::Payment(e) => &e.aggregate_id,
        }
    }

    fn aggregate_type(&self) -> &str {
        match self {
            ProjectedEvent::Ticket(e) => &e.aggregate_type,
            ProjectedEvent::Order(e) => &e.aggregate_type,
            ProjectedEvent::Payment(e) => &e.aggregate_type,
        }
    }

    pub fn event_type(&self) -> &'static str {
        match self {
            ProjectedEvent::Ticket(e) => e.event_type(),
            ProjectedEvent::Order(e) => e.event_type(),
            ProjectedEvent::Payment(e) => e.event_type(),
        }
    }

    fn raw_sequence(&self) -> u64 {
        match self {
            ProjectedEvent::Ticket(e) => e.sequence,
            ProjectedEvent::Order(e) => e.sequence,
            ProjectedEvent::Payment(e) => e.sequence,
        }
    }

    /// The aggregate's sequence number; [`ProjectedEvent::decode`] checked
    /// that it fits.
    pub fn sequence(&self) -> i64 {
        i64::try_from(self.raw_sequence()).unwrap_or(i64::MAX)
    }

    /// When the event was committed to the event store.
    pub fn timestamp(&self) -> chrono::DateTime<chrono::Utc> {
        match self {
            ProjectedEvent::Ticket(e) => e.timestamp,
            ProjectedEvent::Order(e) => e.timestamp,
            ProjectedEvent::Payment(e) => e.timestamp,
        }
    }

    /// Position in the whole event store.
    pub fn global_position(&self) -> i64 {
        let position = match self {
            ProjectedEvent::Ticket(e) => e.global_position,
            ProjectedEvent::Order(e) => e.global_position,
            ProjectedEvent::Payment(e) => e.global_position,
        };
        i64::try_from(position).unwrap_or(i64::MAX)
    }
}

fn envelope<E>(payload: &[u8]) -> Result<Envelope<E>, DecodeError>
where
    E: WireEvent + serde::de::DeserializeOwned,
{
    serde_json::from_slice(payload).map_err(|source| DecodeError::Json {
        expected: E::AGGREGATE_TYPE,
        source,
    })
}

/// What the fold needs of an event (the `rows` module); the live projector
/// has no relay cursor to give, and the fold does not read it.
impl From<ProjectedEvent> for FoldEvent {
    fn from(event: ProjectedEvent) -> Self {
        fn fold<E>(envelope: Envelope<E>, event: impl FnOnce(E) -> WirePayload) -> FoldEvent {
            FoldEvent {
                cursor: Cursor::default(),
                aggregate_id: envelope.aggregate_id,
                sequence: envelope.sequence,
                global_position: envelope.global_position,
                timestamp: envelope.timestamp,
                event: event(envelope.event),
            }
        }
        match event {
            ProjectedEvent::Ticket(e) => fold(e, WirePayload::Ticket),
            ProjectedEvent::Order(e) => fold(e, WirePayload::Order),
            ProjectedEvent::Payment(e) => fold(e, WirePayload::Payment),
        }
    }
}
