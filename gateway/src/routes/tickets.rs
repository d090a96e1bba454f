//! Ticket commands: create and update.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde_json::Value;
use ticketing_aggregates::{
    Money, PriceError, Ticket, TicketCommand, TicketError, Title, TitleError,
};
use ticketing_eventstore::CommandError;

use crate::consistency::{with_token, ConsistencyToken, ReadAfter, View};
use crate::current_user::SignedIn;
use crate::error::{ApiError, ErrorEntry};
use crate::idempotency::NewId;
use crate::json_body::JsonBody;
use crate::pagination::Page;
use crate::read_models;
use crate::request_context::RequestContext;
use crate::routes::as_of::{self, AsOf};
use crate::routes::{parse_id, RawId};
use crate::state::AppState;
use crate::views::TicketView;

struct TicketInput {
    title: Title,
    price: Money,
}

/// The contract words a missing or non-positive price differently on
/// update (the original platform's update handler did).
const UPDATE_PRICE_REQUIRED: &str = "Price must be provided and must be greater than 0";

impl TicketInput {
    fn parse(body: &JsonBody, updating: bool) -> Result<Self, ApiError> {
        let title = body
            .str("title")
            .ok_or(TitleError::Required)
            .and_then(Title::parse);
        // The number's own text is parsed as an exact decimal: no float
        // rounding. A string holding a decimal (what an HTML form posts) is
        // parsed the same way, with the same limits.
        let price = match body.get("price") {
            Some(Value::Number(number)) => Money::parse_decimal(&number.to_string()),
            Some(Value::String(text)) => Money::parse_decimal(text.trim()),
            _ => Err(PriceError::NotPositive),
        };
        match (title, price) {
            (Ok(title), Ok(price)) => Ok(TicketInput { title, price }),
            (title, price) => Err(ApiError::Validation(
                [
                    title.err().map(|e| ErrorEntry::field("title", e)),
                    price.err().map(|e| match e {
                        PriceError::NotPositive if updating => {
                            ErrorEntry::field("price", UPDATE_PRICE_REQUIRED)
                        }
                        e => ErrorEntry::field("price", e),
                    }),
                ]
                .into_iter()
                .flatten()
                .collect(),
            )),
        }
    }
}

#[tracing::instrument(skip_all, fields(user_id = %user.id))]
pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    NewId(id): NewId,
    context: RequestContext,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let input = TicketInput::parse(&body, false)?;
    let id = id.to_string();
    let command = TicketCommand::Create {
        title: input.title,
        price: input.price,
        user_id: user.id.clone(),
    };
    let ticket = match state
        .commands
        .tickets
        .execute_new(&id, command, &context.metadata(&user.id))
        .await
    {
        Ok(executed) => executed.aggregate,
        // Only a request re-run under its Idempotency-Key reuses an id: the
        // ticket its first run created is the answer.
        Err(CommandError::Rejected(TicketError::AlreadyExists)) => {
            let ticket: Ticket = state.commands.tickets.load(&id).await?;
            if ticket.user_id() != user.id {
                return Err(ApiError::NotAuthorized);
            }
            ticket
        }
        Err(other) => return Err(other.into()),
    };
    let token = ConsistencyToken::default().ticket(&id, ticket.version());
    Ok(with_token(
        &token,
        (StatusCode::CREATED, Json(TicketView::new(&id, &ticket))),
    ))
}

#[tracing::instrument(skip_all, fields(user_id = %user.id, ticket_id = %raw_id))]
pub(crate) async fn update(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    RawId(raw_id): RawId,
    context: RequestContext,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let input = TicketInput::parse(&body, true)?;
    let id = parse_id(&raw_id)?;
    let command = TicketCommand::Update {
        title: input.title,
        price: input.price,
        user_id: user.id.clone(),
    };
    let executed = state
        .commands
        .tickets
        .execute(&id, command, &context.metadata(&user.id))
        .await?;
    let ticket = executed.aggregate;
    let token = ConsistencyToken::default().ticket(&id, ticket.version());
    Ok(with_token(&token, Json(TicketView::new(&id, &ticket))))
}

/// Tickets not reserved by any order, oldest first.
#[tracing::instrument(skip_all)]
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    read_after: ReadAfter,
    page: Page,
) -> Result<Response, ApiError> {
    read_after
        .wait(
            &state.applied,
            state.settings.consistency_wait,
            &[View::Ticket],
        )
        .await?;
    let rows =
        read_models::available_tickets(&state.pool, page.after.as_deref(), page.limit).await?;
    let cursor = rows.last().map(|row| row.id.clone());
    let tickets: Vec<TicketView> = rows.into_iter().map(TicketView::from).collect();
    Ok(page.respond("/api/tickets", tickets, cursor))
}

#[tracing::instrument(skip_all, fields(ticket_id = %raw_id))]
pub(crate) async fn show(
    State(state): State<Arc<AppState>>,
    read_after: ReadAfter,
    RawId(raw_id): RawId,
    AsOf(as_of): AsOf,
) -> Result<Json<TicketView>, ApiError> {
    let id = parse_id(&raw_id)?;
    if let Some(at) = as_of {
        return as_of::ticket(&state, &id, at).await;
    }
    read_after
        .wait(
            &state.applied,
            state.settings.consistency_wait,
            &[View::Ticket],
        )
        .await?;
    let row = read_models::ticket(&state.pool, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(TicketView::from(row)))
}
