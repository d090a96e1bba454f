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
use ticketing_projections::queries;
use utoipa::ToSchema;

use crate::consistency::{with_token, ConsistencyToken, ReadAfter, View};
use crate::current_user::SignedIn;
use crate::error::{ApiError, ErrorBody, ErrorEntry};
use crate::idempotency::NewId;
use crate::json_body::JsonBody;
use crate::order_cap;
use crate::page_cache::PageKey;
use crate::pagination::Page;
use crate::precompressed::AcceptEncoding;
use crate::request_context::RequestContext;
use crate::routes::as_of::{self, AsOf};
use crate::routes::{parse_id, RawId};
use crate::state::AppState;
use crate::views::OrderView;

/// `{ticketId}`: the ticket an order is to reserve.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub(crate) struct NewOrder {
    /// Trimmed; must not be empty. Not a known ticket's id: 404.
    #[schema(format = Uuid)]
    ticket_id: String,
}

impl NewOrder {
    fn parse(body: &JsonBody) -> Result<Self, ApiError> {
        body.str("ticketId")
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(|id| NewOrder {
                ticket_id: id.to_owned(),
            })
            .ok_or_else(|| {
                ApiError::Validation(vec![ErrorEntry::field(
                    "ticketId",
                    "TicketId must be provided",
                )])
            })
    }
}

/// Order a ticket
///
/// Reserves the ticket for the order's expiration window
/// (`ORDER_EXPIRATION_SECONDS`, 15 minutes by default).
#[utoipa::path(
    post,
    path = "/api/orders",
    operation_id = "createOrder",
    tag = "orders",
    request_body = NewOrder,
    security(("session" = []), ("bearer" = [])),
    responses(
        (status = 201, description = "Placed: status `created`.", body = OrderView, headers(
            ("X-Consistency-Token" = String, description = "The writes (order and ticket), for read-your-writes on later GETs.")
        ), links(
            ("ShowOrder" = (operation_id = "showOrder", parameters(("id" = "$response.body#/id"), ("header.X-Consistency-Token" = "$response.header.X-Consistency-Token")))),
            ("CancelOrder" = (operation_id = "cancelOrder", parameters(("id" = "$response.body#/id")))),
            ("PayOrder" = (operation_id = "createPayment", request_body = json!({ "token": "tok_visa", "orderId": "$response.body#/id" }))),
            ("OrderHistory" = (operation_id = "orderHistory", parameters(("id" = "$response.body#/id")))),
        )),
        (status = 400, description = "\"TicketId must be provided\" (field `ticketId`); \"Ticket is already reserved\"; \"You have too many open orders; pay for or cancel one first\" (over `MAX_LIVE_ORDERS_PER_USER`); a body that is not a JSON object or not sent as `application/json`.", body = ErrorBody),
        (status = 401, description = "\"Not authorized\": signed out.", body = ErrorBody),
        (status = 404, description = "\"Not Found\": no such ticket.", body = ErrorBody),
        (status = 503, description = "\"The service is busy; retry shortly\", or \"The outcome of the request is unknown; retry it with the same Idempotency-Key\".", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.id))]
pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    NewId(order_id): NewId,
    context: RequestContext,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let NewOrder { ticket_id } = NewOrder::parse(&body)?;
    let ticket_id = parse_id(&ticket_id)?;
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

/// Cancel an order
///
/// Cancels the order and releases its ticket. Cancelling a cancelled order
/// again succeeds.
#[utoipa::path(
    delete,
    path = "/api/orders/{id}",
    operation_id = "cancelOrder",
    tag = "orders",
    params(("id" = String, Path, format = Uuid, description = "The order's id; anything else is 404.")),
    security(("session" = []), ("bearer" = [])),
    responses(
        (status = 204, description = "Cancelled, its ticket released.", headers(
            ("X-Consistency-Token" = String, description = "The writes (order and ticket), for read-your-writes on later GETs.")
        )),
        (status = 400, description = "\"Cannot cancel a completed order\".", body = ErrorBody),
        (status = 401, description = "\"Not authorized\": signed out, or not the order's buyer.", body = ErrorBody),
        (status = 404, description = "\"Not Found\": no such order.", body = ErrorBody),
        (status = 503, description = "\"The service is busy; retry shortly\", or \"The outcome of the request is unknown; retry it with the same Idempotency-Key\".", body = ErrorBody),
    )
)]
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

/// My orders
///
/// The caller's orders, oldest first, each with its ticket.
#[utoipa::path(
    get,
    path = "/api/orders",
    operation_id = "listOrders",
    tag = "orders",
    params(Page, ReadAfter),
    security(("session" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "A page of the caller's orders.", body = Vec<OrderView>, headers(
            ("Link" = String, description = "`</api/orders?limit=<n>&after=<id>>; rel=\"next\"` when the page is full.")
        )),
        (status = 400, description = "\"limit must be an integer from 1 to <LIST_LIMIT>\"; \"after must be the id of an item of the list\"; \"The query string is malformed\"; \"X-Consistency-Token is malformed\"; \"X-Consistency-Token names a change that was never made\".", body = ErrorBody),
        (status = 401, description = "\"Not authorized\": signed out.", body = ErrorBody),
        (status = 503, description = "\"The read model has not caught up with your last change yet; retry shortly\" (a token in the header only), or \"The service is busy; retry shortly\".", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.id))]
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    read_after: ReadAfter,
    accept: AcceptEncoding,
    page: Page,
) -> Result<Response, ApiError> {
    let fresh_after = read_after
        .wait(
            &state.applied,
            state.settings.consistency_wait,
            &[View::Order, View::Ticket],
        )
        .await?;
    // The user is part of the key: one user's page never answers another.
    let key = PageKey::Orders {
        user_id: user.id.clone(),
        limit: page.limit,
        after: page.after.clone(),
    };
    state
        .pages
        .serve(key, fresh_after, accept, || async {
            let rows =
                queries::orders_of(state.views(), &user.id, page.after.as_deref(), page.limit)
                    .await?;
            let cursor = rows.last().map(|row| row.id.clone());
            let orders: Vec<OrderView> = rows.into_iter().map(OrderView::from).collect();
            page.render("/api/orders", &orders, cursor.as_deref())
        })
        .await
}

/// An order
#[utoipa::path(
    get,
    path = "/api/orders/{id}",
    operation_id = "showOrder",
    tag = "orders",
    params(("id" = String, Path, format = Uuid, description = "The order's id; anything else is 404."), ReadAfter, ("asOf" = Option<String>, Query, format = DateTime, description = "Time travel: the order as it was at this moment (RFC 3339, e.g. `2025-01-31T12:00:00Z`), folded from its events recorded until then (with its ticket as it was then), and without waiting for the read models. Not an RFC 3339 time: 400.")),
    security(("session" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The order.", body = OrderView),
        (status = 400, description = "\"asOf must be an RFC 3339 time, e.g. 2025-01-31T12:00:00Z\"; \"The query string is malformed\"; \"X-Consistency-Token is malformed\"; \"X-Consistency-Token names a change that was never made\".", body = ErrorBody),
        (status = 401, description = "\"Not authorized\": signed out, or not the order's buyer.", body = ErrorBody),
        (status = 404, description = "\"Not Found\": no such order (with `asOf`: none yet at that moment).", body = ErrorBody),
        (status = 503, description = "\"The read model has not caught up with your last change yet; retry shortly\" (a token in the header only), or \"The service is busy; retry shortly\".", body = ErrorBody),
    )
)]
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
    let row = queries::order(state.views(), &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if row.user_id != user.id {
        return Err(ApiError::NotAuthorized);
    }
    Ok(Json(OrderView::from(row)))
}
