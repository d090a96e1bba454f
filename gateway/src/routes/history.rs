//! `GET /api/tickets/:id/history` and `GET /api/orders/:id/history`: the
//! audit trail, read from the event store (complete as soon as a command
//! answered, never waiting on the projections), each event as the relay
//! publishes it on its topic (`ticketing_relay::read_aggregate_history`).
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

use crate::current_user::SignedIn;
use crate::error::ApiError;
use crate::pagination::Page;
use crate::routes::{parse_id, RawId};
use crate::state::AppState;

/// The fields of another user's event a ticket's owner does not see: which
/// order (and so which buyer) it was, and the ids of the buyer's request.
const OTHERS_DATA: [&str; 2] = ["orderId", "userId"];
const OTHERS_IDS: [&str; 2] = ["correlationId", "causationId"];

#[tracing::instrument(skip_all, fields(user_id = %user.id, ticket_id = %raw_id))]
pub(crate) async fn ticket(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    RawId(raw_id): RawId,
    page: Page,
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

#[tracing::instrument(skip_all, fields(user_id = %user.id, order_id = %raw_id))]
pub(crate) async fn order(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    RawId(raw_id): RawId,
    page: Page,
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
    page: &Page,
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
    page: &Page,
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
mod tests {
    use super::redact;
    use serde_json::json;

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
