//! Order commands: place (reserving the ticket) and cancel (releasing it).
//!
//! Placing an order touches two aggregates. The ticket is reserved first, in
//! its own stream, so that optimistic concurrency on the ticket decides which
//! of many concurrent buyers wins; the order is recorded second. The
//! reservation carries the order's expiry, so a reservation whose order was
//! never recorded (a crash in between) can be found and released later.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use chrono::Utc;
use ticketing_aggregates::{Order, OrderCommand, OrderError, OrderTicket, TicketCommand};
use ticketing_eventstore::{CommandError, CommandMetadata};

use crate::consistency::{with_token, ConsistencyToken, ReadAfter, View};
use crate::current_user::SignedIn;
use crate::error::{ApiError, ErrorEntry};
use crate::idempotency::NewId;
use crate::json_body::JsonBody;
use crate::order_cap;
use crate::pagination::Page;
use crate::read_models;
use crate::request_context::RequestContext;
use crate::routes::as_of::{self, AsOf};
use crate::routes::{parse_id, RawId};
use crate::state::AppState;
use crate::views::OrderView;

#[tracing::instrument(skip_all, fields(user_id = %user.id))]
pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    NewId(order_id): NewId,
    context: RequestContext,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let ticket_id = body
        .str("ticketId")
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| {
            ApiError::Validation(vec![ErrorEntry::field(
                "ticketId",
                "TicketId must be provided",
            )])
        })?;
    let ticket_id = parse_id(ticket_id)?;
    let order_id = order_id.to_string();
    let metadata = context.metadata(&user.id);
    let expires_at = Utc::now() + state.settings.order_expiration;

    let reserve = TicketCommand::Reserve {
        order_id: order_id.clone(),
        expires_at,
    };
    let reserved = state
        .commands
        .tickets
        .execute(&ticket_id, reserve, &metadata)
        .await?;
    // The slot is taken once the ticket is won: buyers racing for one
    // ticket lose on the reservation, not on slots held by their attempts.
    if let Err(refused) = order_cap::take_slot(
        &state.pool,
        state.settings.max_live_orders,
        &user.id,
        &order_id,
        expires_at,
    )
    .await
    {
        release(&state, &ticket_id, &order_id, &metadata).await;
        return Err(refused);
    }
    let ticket = reserved.aggregate;
    let place = OrderCommand::Place {
        user_id: user.id.clone(),
        ticket: OrderTicket {
            id: ticket_id.clone(),
            title: ticket.title().to_owned(),
            price_cents: ticket.price().cents(),
            version: ticket.version(),
        },
        expires_at,
    };
    let order = match state
        .commands
        .orders
        .execute_new(&order_id, place, &metadata)
        .await
    {
        Ok(executed) => executed.aggregate,
        // A re-run under the same Idempotency-Key: the first run's order.
        Err(CommandError::Rejected(OrderError::AlreadyExists)) => {
            let order: Order = state.commands.orders.load(&order_id).await?;
            if order.user_id() != user.id {
                return Err(ApiError::NotAuthorized);
            }
            order
        }
        // The order may be stored: releasing its ticket could sell it twice.
        // A retry under the same Idempotency-Key finds out; an order never
        // placed loses its reservation when the reservation expires.
        Err(unknown @ CommandError::Unknown { .. }) => return Err(unknown.into()),
        // Definitely not placed: the reservation is given back.
        Err(other) => {
            release(&state, &ticket_id, &order_id, &metadata).await;
            order_cap::give_back(&state.pool, &user.id, &order_id).await;
            return Err(other.into());
        }
    };
    let token = ConsistencyToken::default()
        .order(&order_id, order.version())
        .ticket(&ticket_id, ticket.version());
    let view = OrderView::new(&order_id, &order)?;
    Ok(with_token(&token, (StatusCode::CREATED, Json(view))))
}

/// Best effort: if this fails too, the reservation expires with the order's
/// window and the repair process releases it.
async fn release(state: &AppState, ticket_id: &str, order_id: &str, metadata: &CommandMetadata) {
    let command = TicketCommand::Release {
        order_id: order_id.to_owned(),
    };
    if let Err(error) = state
        .commands
        .tickets
        .execute(ticket_id, command, metadata)
        .await
    {
        tracing::error!(error.cause_chain = ?error, ticket_id, order_id, "failed to release a ticket");
    }
}

#[tracing::instrument(skip_all, fields(user_id = %user.id, order_id = %raw_id))]
pub(crate) async fn cancel(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    RawId(raw_id): RawId,
    context: RequestContext,
) -> Result<Response, ApiError> {
    let order_id = parse_id(&raw_id)?;
    let metadata = context.metadata(&user.id);
    let command = OrderCommand::Cancel {
        user_id: user.id.clone(),
    };
    let cancelled = state
        .commands
        .orders
        .execute(&order_id, command, &metadata)
        .await?
        .aggregate;
    let mut token = ConsistencyToken::default().order(&order_id, cancelled.version());
    // Also on a repeated cancel, so a release lost to a crash is retried.
    if let Some(ticket) = cancelled.ticket() {
        let release = TicketCommand::Release {
            order_id: order_id.clone(),
        };
        let released = state
            .commands
            .tickets
            .execute(&ticket.id, release, &metadata)
            .await?;
        token = token.ticket(&ticket.id, released.aggregate.version());
    }
    Ok(with_token(&token, StatusCode::NO_CONTENT))
}

/// The caller's orders, oldest first, each with its ticket.
#[tracing::instrument(skip_all, fields(user_id = %user.id))]
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    read_after: ReadAfter,
    page: Page,
) -> Result<Response, ApiError> {
    read_after
        .wait(
            &state.applied,
            state.settings.consistency_wait,
            &[View::Order, View::Ticket],
        )
        .await?;
    let rows =
        read_models::orders_of(&state.pool, &user.id, page.after.as_deref(), page.limit).await?;
    let cursor = rows.last().map(|row| row.id.clone());
    let orders: Vec<OrderView> = rows.into_iter().map(OrderView::from).collect();
    Ok(page.respond("/api/orders", orders, cursor))
}

#[tracing::instrument(skip_all, fields(user_id = %user.id, order_id = %raw_id))]
pub(crate) async fn show(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    read_after: ReadAfter,
    RawId(raw_id): RawId,
    AsOf(as_of): AsOf,
) -> Result<Json<OrderView>, ApiError> {
    let id = parse_id(&raw_id)?;
    if let Some(at) = as_of {
        return as_of::order(&state, &user.id, &id, at).await;
    }
    read_after
        .wait(
            &state.applied,
            state.settings.consistency_wait,
            &[View::Order, View::Ticket],
        )
        .await?;
    let row = read_models::order(&state.pool, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if row.user_id != user.id {
        return Err(ApiError::NotAuthorized);
    }
    Ok(Json(OrderView::from(row)))
}
