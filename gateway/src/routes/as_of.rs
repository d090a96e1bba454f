//! Time travel: `GET /api/tickets/:id?asOf=<RFC 3339>` and the same for
//! orders answer the aggregate as it was at that moment, folded from the
//! event store by the aggregate's own `apply`
//! (`ticketing_eventstore::load_as_of`) and shown in the usual view. The
//! normal GET's rules apply: tickets are public, an order is its owner's.
//!
//! Always on the primary, even with a read replica: the events are the
//! truth a client's own write must be in at once (no token waits here).

use std::collections::HashMap;

use anyhow::Context;
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::Json;
use chrono::{DateTime, Utc};
use ticketing_aggregates::{Order, Ticket};
use ticketing_eventstore::load_as_of;

use crate::error::ApiError;
use crate::state::AppState;
use crate::views::{OrderView, TicketView};

/// The `asOf` query parameter, if given: a malformed one is a 400.
pub(crate) struct AsOf(pub(crate) Option<DateTime<Utc>>);

impl<S: Send + Sync> FromRequestParts<S> for AsOf {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(params) = Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::BadRequest("The query string is malformed".to_owned()))?;
        params
            .get("asOf")
            .map(|raw| {
                DateTime::parse_from_rfc3339(raw.trim())
                    .map(|at| at.with_timezone(&Utc))
                    .map_err(|_| {
                        ApiError::BadRequest(
                            "asOf must be an RFC 3339 time, e.g. 2025-01-31T12:00:00Z".to_owned(),
                        )
                    })
            })
            .transpose()
            .map(AsOf)
    }
}

/// The ticket `id` as it was at `at`; 404 if it did not exist yet.
pub(crate) async fn ticket(
    state: &AppState,
    id: &str,
    at: DateTime<Utc>,
) -> Result<Json<TicketView>, ApiError> {
    let ticket = load_as_of::<Ticket>(&state.pool, id, at)
        .await
        .context("Failed to fold a ticket as of a moment")?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(TicketView::new(id, &ticket)))
}

/// The order `id` as it was at `at`, with its ticket as it was then (the
/// normal GET shows the ticket as it is now); 404 if it did not exist yet,
/// 401 if it is not `user_id`'s.
pub(crate) async fn order(
    state: &AppState,
    user_id: &str,
    id: &str,
    at: DateTime<Utc>,
) -> Result<Json<OrderView>, ApiError> {
    let order = load_as_of::<Order>(&state.pool, id, at)
        .await
        .context("Failed to fold an order as of a moment")?
        .ok_or(ApiError::NotFound)?;
    if order.user_id() != user_id {
        return Err(ApiError::NotAuthorized);
    }
    let mut view = OrderView::new(id, &order)?;
    if let Some(placed) = order.ticket() {
        let ticket = load_as_of::<Ticket>(&state.pool, &placed.id, at)
            .await
            .context("Failed to fold an order's ticket as of a moment")?;
        if let Some(ticket) = ticket {
            view = view.with_ticket(&ticket);
        }
    }
    Ok(Json(view))
}
