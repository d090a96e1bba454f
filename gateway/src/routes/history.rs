//! `GET /api/tickets/:id/history` and `GET /api/orders/:id/history`: the
//! audit trail, read from the event store (complete as soon as a command
//! answered, never waiting on the projections), each event as the relay
//! publishes it on its topic (`ticketing_relay::read_aggregate_history`).
//! Always on the primary, even with a read replica (`READ_DATABASE_URL`):
//! "complete as soon as a command answered" holds only where the command
//! wrote, and no consistency token covers a history.
//!
//! An order's history holds the events of its payments too, interleaved
//! where they happened. A ticket's history is its owner's, but its
//! reservations are the buyers': an event the owner did not cause keeps
//! its type, time and deadline, not whose it was (see [`redact`]).

use std::sync::Arc;

use anyhow::Context;
use axum::extract::State;
use axum::response::Response;
use cqrs_es::Aggregate;
use serde_json::Value;
use ticketing_aggregates::{Order, Ticket};
use ticketing_relay::{read_aggregate_history, AggregateHistoryEvent, AggregateHistoryQuery};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, SchemaType, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use crate::current_user::SignedIn;
use crate::error::{ApiError, ErrorBody};
use crate::pagination::HistoryPage;
use crate::routes::{parse_id, RawId};
use crate::state::AppState;

/// The fields of another user's event a ticket's owner does not see: which
/// order (and so which buyer) it was, and the ids of the buyer's request.
const OTHERS_DATA: [&str; 2] = ["orderId", "userId"];
const OTHERS_IDS: [&str; 2] = ["correlationId", "causationId"];

/// Every `eventType` of the three topics (`ticketing_schemas`' event enums).
const EVENT_TYPES: [&str; 13] = [
    "TicketCreated",
    "TicketUpdated",
    "TicketReserved",
    "TicketReleased",
    "OrderPlaced",
    "OrderCancelled",
    "OrderExpired",
    "OrderPaymentStarted",
    "OrderPaymentFailed",
    "OrderCompleted",
    "PaymentRequested",
    "PaymentSucceeded",
    "PaymentFailed",
];

/// One event of a history, as documented: the handlers send the published
/// envelope itself (`WireEnvelope`), redacted where it is another user's,
/// and a unit test holds this schema to what they send.
pub(crate) enum HistoryEvent {}

impl PartialSchema for HistoryEvent {
    fn schema() -> RefOr<Schema> {
        let string = || ObjectBuilder::new().schema_type(Type::String);
        let nullable = |description: &str| {
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                .description(Some(description))
        };
        let position = |description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .minimum(Some(1))
                .description(Some(description))
        };
        let fields = [
            (
                "eventId",
                string()
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
                    .description(Some("Unique per event: the key consumers deduplicate on.")),
            ),
            (
                "schemaVersion",
                string()
                    .pattern(Some(r"^[0-9]+\.[0-9]+\.[0-9]+$"))
                    .description(Some("Semver of the payload schema of `eventType`."))
                    .examples(["1.0.0"]),
            ),
            (
                "aggregateType",
                string()
                    .enum_values(Some(["Ticket", "Order", "Payment"]))
                    .description(Some(
                        "Whose event it is: an order's history also holds its payments' events.",
                    )),
            ),
            (
                "aggregateId",
                string().description(Some("The id of that ticket, order or payment.")),
            ),
            (
                "sequence",
                position("1 for the event that created the aggregate, then +1 per event."),
            ),
            (
                "globalPosition",
                position(
                    "Position in the whole event store: the history's order, and the `after` \
                     of the next page.",
                ),
            ),
            (
                "timestamp",
                string()
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                    .description(Some("When the event was recorded (RFC 3339, UTC).")),
            ),
            (
                "correlationId",
                nullable("Shared by every event one request caused; `null` when redacted."),
            ),
            (
                "causationId",
                nullable(
                    "The request or event that directly caused this one; `null` when redacted.",
                ),
            ),
            (
                "eventType",
                string()
                    .enum_values(Some(EVENT_TYPES))
                    .description(Some("What happened.")),
            ),
            (
                "data",
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .description(Some(
                        "The event's payload as published for `eventType` at `schemaVersion` \
                     (`schemas/asyncapi.json`). A redacted event lacks `orderId` and `userId`.",
                    )),
            ),
            (
                "redacted",
                ObjectBuilder::new()
                    .schema_type(Type::Boolean)
                    .enum_values(Some([true]))
                    .description(Some(
                        "Only on an event of a ticket's history its owner did not cause (a \
                         buyer's reservation): what tells whose it was is left out.",
                    )),
            ),
        ];
        let mut object = ObjectBuilder::new().description(Some(
            "One event of a history: the message the relay publishes for it on its topic.",
        ));
        for (name, field) in fields {
            object = object.property(name, field);
            if name != "redacted" {
                object = object.required(name);
            }
        }
        RefOr::T(Schema::Object(object.build()))
    }
}

impl ToSchema for HistoryEvent {}

/// A ticket's history
///
/// The events of a ticket, oldest first, each as published. Only its
/// seller may read it; another user's reservation shows its type, time and
/// deadline but not whose it was (`redacted`).
#[utoipa::path(
    get,
    path = "/api/tickets/{id}/history",
    operation_id = "ticketHistory",
    tag = "tickets",
    params(("id" = String, Path, format = Uuid, description = "The ticket's id; anything else is 404."), HistoryPage),
    security(("session" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "A page of the ticket's events.", body = Vec<HistoryEvent>, headers(
            ("Link" = String, description = "`</api/tickets/{id}/history?limit=<n>&after=<globalPosition>>; rel=\"next\"` when the page is full.")
        )),
        (status = 400, description = "\"limit must be an integer from 1 to <LIST_LIMIT>\"; \"after must be the globalPosition of an event\"; \"The query string is malformed\".", body = ErrorBody),
        (status = 401, description = "\"Not authorized\": signed out, or not the ticket's seller.", body = ErrorBody),
        (status = 404, description = "\"Not Found\": no such ticket.", body = ErrorBody),
        (status = 503, description = "\"The service is busy; retry shortly\".", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.id, ticket_id = %raw_id))]
pub(crate) async fn ticket(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    RawId(raw_id): RawId,
    page: HistoryPage,
) -> Result<Response, ApiError> {
    let id = parse_id(&raw_id)?;
    let ticket: Ticket = state.commands.tickets.load(&id).await?;
    if !ticket.exists() {
        return Err(ApiError::NotFound);
    }
    if ticket.user_id() != user.id {
        return Err(ApiError::NotAuthorized);
    }
    let events = read(&state, Ticket::TYPE, &id, &page).await?;
    respond(
        &page,
        &format!("/api/tickets/{id}/history"),
        events,
        |event| event.actor.as_deref() != Some(user.id.as_str()),
    )
}

/// An order's history
///
/// The events of an order and of its payments, interleaved where they
/// happened, oldest first, each as published. Only its buyer may read it.
#[utoipa::path(
    get,
    path = "/api/orders/{id}/history",
    operation_id = "orderHistory",
    tag = "orders",
    params(("id" = String, Path, format = Uuid, description = "The order's id; anything else is 404."), HistoryPage),
    security(("session" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "A page of the order's and its payments' events.", body = Vec<HistoryEvent>, headers(
            ("Link" = String, description = "`</api/orders/{id}/history?limit=<n>&after=<globalPosition>>; rel=\"next\"` when the page is full.")
        )),
        (status = 400, description = "\"limit must be an integer from 1 to <LIST_LIMIT>\"; \"after must be the globalPosition of an event\"; \"The query string is malformed\".", body = ErrorBody),
        (status = 401, description = "\"Not authorized\": signed out, or not the order's buyer.", body = ErrorBody),
        (status = 404, description = "\"Not Found\": no such order.", body = ErrorBody),
        (status = 503, description = "\"The service is busy; retry shortly\".", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.id, order_id = %raw_id))]
pub(crate) async fn order(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    RawId(raw_id): RawId,
    page: HistoryPage,
) -> Result<Response, ApiError> {
    let id = parse_id(&raw_id)?;
    let order: Order = state.commands.orders.load(&id).await?;
    if !order.exists() {
        return Err(ApiError::NotFound);
    }
    if order.user_id() != user.id {
        return Err(ApiError::NotAuthorized);
    }
    let events = read(&state, Order::TYPE, &id, &page).await?;
    // Everything in it is the buyer's own order and payments, the system's
    // follow-ups (expiry, payment recovery) included.
    respond(&page, &format!("/api/orders/{id}/history"), events, |_| {
        false
    })
}

async fn read(
    state: &AppState,
    aggregate_type: &str,
    aggregate_id: &str,
    page: &HistoryPage,
) -> Result<Vec<AggregateHistoryEvent>, ApiError> {
    // The cursor is the last event's `globalPosition`, unique across the
    // order's and its payments' events.
    let after_position = match page.after.as_deref() {
        None => 0,
        Some(after) => after
            .parse::<i64>()
            .ok()
            .filter(|p| *p >= 0)
            .ok_or_else(|| {
                ApiError::BadRequest("after must be the globalPosition of an event".to_owned())
            })?,
    };
    let mut conn = state
        .pool
        .acquire()
        .await
        .context("Failed to get a connection for a history")?;
    let query = AggregateHistoryQuery {
        aggregate_type,
        aggregate_id,
        after_position,
        until: None,
        limit: page.limit,
    };
    read_aggregate_history(&mut conn, &query)
        .await
        .context("Failed to read a history")
        .map_err(ApiError::from)
}

fn respond(
    page: &HistoryPage,
    path: &str,
    events: Vec<AggregateHistoryEvent>,
    others: impl Fn(&AggregateHistoryEvent) -> bool,
) -> Result<Response, ApiError> {
    let cursor = events.last().map(|e| e.global_position().to_string());
    let items = events
        .iter()
        .map(|event| {
            let mut item = serde_json::to_value(&event.envelope)
                .context("Failed to serialise a history event")?;
            if others(event) {
                redact(&mut item);
            }
            Ok(item)
        })
        .collect::<Result<Vec<Value>, anyhow::Error>>()?;
    Ok(page.respond(path, items, cursor))
}

/// Drops from a published event what tells whose it was, and marks it
/// `"redacted": true` so a client knows fields are missing on purpose.
fn redact(item: &mut Value) {
    if let Some(data) = item.get_mut("data").and_then(Value::as_object_mut) {
        for field in OTHERS_DATA {
            let _ = data.remove(field);
        }
    }
    if let Some(item) = item.as_object_mut() {
        for field in OTHERS_IDS {
            let _ = item.insert(field.to_owned(), Value::Null);
        }
        let _ = item.insert("redacted".to_owned(), Value::Bool(true));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{redact, HistoryEvent, EVENT_TYPES};
    use chrono::Utc;
    use serde_json::{json, Value};
    use ticketing_relay::WireEnvelope;
    use ticketing_schemas::{
        Envelope, PaymentEventV1, PaymentSucceededV1, TicketEventV1, TicketReservedV1,
    };
    use utoipa::PartialSchema;
    use uuid::Uuid;

    /// Checks `item` against the documented schema's properties: no field
    /// it leaves out, every required one there, each of its type and enum.
    fn assert_documented(item: &Value) {
        let schema = serde_json::to_value(HistoryEvent::schema()).unwrap();
        let properties = schema["properties"].as_object().unwrap();
        let object = item.as_object().unwrap();
        for required in schema["required"].as_array().unwrap() {
            assert!(
                object.contains_key(required.as_str().unwrap()),
                "{required} in {item}"
            );
        }
        for (name, value) in object {
            let property = properties
                .get(name)
                .unwrap_or_else(|| panic!("{name} undocumented"));
            let kind = match value {
                Value::Null => "null",
                Value::Bool(_) => "boolean",
                Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
                Value::Number(_) => "number",
                Value::String(_) => "string",
                Value::Array(_) => "array",
                Value::Object(_) => "object",
            };
            let types: Vec<&str> = match &property["type"] {
                Value::String(one) => vec![one.as_str()],
                Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            assert!(types.contains(&kind), "{name}: {kind} not in {types:?}");
            if let Some(allowed) = property["enum"].as_array() {
                assert!(
                    allowed.contains(value),
                    "{name}: {value} not in {allowed:?}"
                );
            }
        }
    }

    fn envelope<E>(aggregate_type: &str, event: E) -> Envelope<E> {
        Envelope {
            event_id: Uuid::now_v7(),
            schema_version: "1.0.0".to_owned(),
            aggregate_type: aggregate_type.to_owned(),
            aggregate_id: Uuid::now_v7().to_string(),
            sequence: 2,
            global_position: 42,
            timestamp: Utc::now(),
            correlation_id: Some("request".to_owned()),
            causation_id: Some("request".to_owned()),
            event,
        }
    }

    #[test]
    fn the_documented_event_is_what_the_history_sends() {
        let reserved = WireEnvelope::Ticket(envelope(
            "Ticket",
            TicketEventV1::TicketReserved(TicketReservedV1 {
                order_id: "o-1".to_owned(),
                expires_at: Utc::now(),
            }),
        ));
        let mut item = serde_json::to_value(&reserved).unwrap();
        assert_documented(&item);
        redact(&mut item);
        assert_documented(&item);
        let paid = WireEnvelope::Payment(envelope(
            "Payment",
            PaymentEventV1::PaymentSucceeded(PaymentSucceededV1::default()),
        ));
        assert_documented(&serde_json::to_value(&paid).unwrap());
    }

    #[test]
    fn every_published_event_type_is_documented() {
        let mut published: Vec<String> = ticketing_schemas::registry::generate()
            .unwrap()
            .into_iter()
            .map(|schema| schema.event_type)
            .collect();
        let mut documented = EVENT_TYPES.map(str::to_owned).to_vec();
        published.sort();
        documented.sort();
        assert_eq!(documented, published);
    }

    #[test]
    fn a_redacted_reservation_keeps_what_happened_and_when_but_not_whose() {
        let mut item = json!({
            "eventType": "TicketReserved",
            "sequence": 3,
            "correlationId": "buyer-request",
            "causationId": "buyer-request",
            "data": { "orderId": "o-1", "expiresAt": "2030-01-01T00:00:00Z" }
        });

        redact(&mut item);

        assert_eq!(
            item,
            json!({
                "eventType": "TicketReserved",
                "sequence": 3,
                "correlationId": null,
                "causationId": null,
                "data": { "expiresAt": "2030-01-01T00:00:00Z" },
                "redacted": true
            })
        );
    }
}
