use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What every event payload enum of a topic tells about itself.
pub trait WireEvent {
    /// The `aggregateType` of every event of this enum, e.g. `"Ticket"`.
    const AGGREGATE_TYPE: &'static str;
    /// The `eventType`, e.g. `"TicketCreated"`.
    fn event_type(&self) -> &'static str;
    /// The semver of this event's payload schema.
    fn schema_version(&self) -> &'static str {
        Self::version_of(self.event_type())
    }
    /// The current semver of `event_type`'s payload schema, without an
    /// instance (schema generation needs it per variant). Every event type
    /// starts at `1.0.0`; a compatible change bumps the minor version here.
    fn version_of(_event_type: &str) -> &'static str {
        "1.0.0"
    }
}

/// One published event: identity, position, causality and payload.
///
/// `event` is flattened: its `eventType` and `data` fields sit next to the
/// others, so the JSON is one flat object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<E> {
    /// Unique per event and the same on every re-publication: the key
    /// consumers deduplicate on.
    pub event_id: Uuid,
    /// Semver of the payload schema of `eventType`.
    pub schema_version: String,
    /// `Ticket`, `Order` or `Payment`.
    pub aggregate_type: String,
    /// Also the Kafka message key, so one aggregate's events share a
    /// partition and keep their order.
    pub aggregate_id: String,
    /// 1 for the event that created the aggregate, then +1 per event.
    pub sequence: u64,
    /// Position in the whole event store, assigned at insert; increasing
    /// per aggregate, but not a publication order across aggregates.
    pub global_position: u64,
    /// When the event was recorded (RFC 3339, UTC).
    pub timestamp: DateTime<Utc>,
    /// Shared by every event caused, directly or not, by one request.
    pub correlation_id: Option<String>,
    /// The request or event that directly caused this one.
    pub causation_id: Option<String>,
    /// `eventType` and `data`.
    #[serde(flatten)]
    pub event: E,
}

impl<E: WireEvent> Envelope<E> {
    pub fn event_type(&self) -> &'static str {
        self.event.event_type()
    }
}
