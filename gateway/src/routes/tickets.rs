//! Ticket commands: create and update.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;
use ticketing_aggregates::{
    Money, PriceError, Ticket, TicketCommand, TicketError, Title, TitleError,
};
use ticketing_eventstore::CommandError;
use ticketing_projections::queries;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
use utoipa::ToSchema;

use crate::consistency::{with_token, ConsistencyToken, ReadAfter, View};
use crate::current_user::SignedIn;
use crate::error::{ApiError, ErrorBody, ErrorEntry};
use crate::idempotency::NewId;
use crate::json_body::JsonBody;
use crate::page_cache::{PageKey, Rendered};
use crate::pagination::Page;
use crate::precompressed::AcceptEncoding;
use crate::request_context::RequestContext;
use crate::routes::as_of::{self, AsOf};
use crate::routes::{parse_id, RawId};
use crate::state::AppState;
use crate::views::TicketView;

// Validated by hand from the body (not deserialized), so that every failed
// rule is reported at once, in the contract's words.
/// `{title, price}`: a ticket to create, or a ticket's new title and price.
#[derive(ToSchema)]
pub(crate) struct TicketInput {
    /// Trimmed: 1 to 200 characters, no control characters.
    #[schema(
        value_type = String,
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$",
        example = "Concert"
    )]
    title: Title,
    #[schema(schema_with = price_schema)]
    price: Money,
}

/// A price as the API takes it: a JSON number, or a string holding one (what
/// an HTML form posts), parsed the same way.
fn price_schema() -> OneOfBuilder {
    let limits = "> 0, at most 999999.99, at most 2 decimal places";
    OneOfBuilder::new()
        .description(Some(format!(
            "In currency units ({limits}); parsed from its text as an exact decimal. \
             Anything else is 400 \"Price must be greater than 0\"."
        )))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .exclusive_minimum(Some(0))
                .maximum(Some(999_999.99))
                .multiple_of(Some(0.01))
                .examples([25.5]),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(
                    r"^\s*0*([1-9][0-9]{0,5}(\.[0-9]{0,2})?|0?\.(0[1-9]|[1-9][0-9]?))\s*$",
                ))
                .examples(["25.00"]),
        )
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

/// Sell a ticket
#[utoipa::path(
    post,
    path = "/api/tickets",
    operation_id = "createTicket",
    tag = "tickets",
    request_body = TicketInput,
    security(("session" = []), ("bearer" = [])),
    responses(
        (status = 201, description = "Created (version 0).", body = TicketView, headers(
            ("X-Consistency-Token" = String, description = "The write, for read-your-writes on later GETs.")
        ), links(
            ("ShowTicket" = (operation_id = "showTicket", parameters(("id" = "$response.body#/id"), ("header.X-Consistency-Token" = "$response.header.X-Consistency-Token")))),
            ("UpdateTicket" = (operation_id = "updateTicket", parameters(("id" = "$response.body#/id")))),
            ("OrderTicket" = (operation_id = "createOrder", request_body = json!({ "ticketId": "$response.body#/id" }))),
            ("TicketHistory" = (operation_id = "ticketHistory", parameters(("id" = "$response.body#/id")))),
        )),
        (status = 400, description = "\"Title is required\", \"Title must be at most 200 characters\", \"Title must not contain control characters\" (field `title`); \"Price must be greater than 0\", \"Price must have at most 2 decimal places\", \"Price must not exceed 999999.99\" (field `price`); a body that is not a JSON object or not sent as `application/json`.", body = ErrorBody),
        (status = 401, description = "\"Not authorized\": signed out.", body = ErrorBody),
        (status = 503, description = "\"The service is busy; retry shortly\", or \"The outcome of the request is unknown; retry it with the same Idempotency-Key\".", body = ErrorBody),
    )
)]
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

/// Change a ticket's title and price
#[utoipa::path(
    put,
    path = "/api/tickets/{id}",
    operation_id = "updateTicket",
    tag = "tickets",
    params(("id" = String, Path, format = Uuid, description = "The ticket's id; anything else is 404.")),
    request_body = TicketInput,
    security(("session" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Updated (version + 1).", body = TicketView, headers(
            ("X-Consistency-Token" = String, description = "The write, for read-your-writes on later GETs.")
        )),
        (status = 400, description = "The title's rules as on creation (field `title`); \"Price must be provided and must be greater than 0\", \"Price must have at most 2 decimal places\", \"Price must not exceed 999999.99\" (field `price`); \"Cannot edit a reserved ticket\"; a body that is not a JSON object or not sent as `application/json`.", body = ErrorBody),
        (status = 401, description = "\"Not authorized\": signed out, or not the ticket's seller.", body = ErrorBody),
        (status = 404, description = "\"Not Found\": no such ticket.", body = ErrorBody),
        (status = 503, description = "\"The service is busy; retry shortly\", or \"The outcome of the request is unknown; retry it with the same Idempotency-Key\".", body = ErrorBody),
    )
)]
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

/// Tickets for sale
///
/// Tickets not reserved by any order, oldest first.
#[utoipa::path(
    get,
    path = "/api/tickets",
    operation_id = "listTickets",
    tag = "tickets",
    params(Page, ReadAfter),
    responses(
        (status = 200, description = "A page of tickets.", body = Vec<TicketView>, headers(
            ("Link" = String, description = "`</api/tickets?limit=<n>&after=<id>>; rel=\"next\"` when the page is full.")
        )),
        (status = 400, description = "\"limit must be an integer from 1 to <LIST_LIMIT>\"; \"after must be the id of an item of the list\"; \"The query string is malformed\"; \"X-Consistency-Token is malformed\"; \"X-Consistency-Token names a change that was never made\".", body = ErrorBody),
        (status = 503, description = "\"The read model has not caught up with your last change yet; retry shortly\" (a token in the header only), or \"The service is busy; retry shortly\".", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    read_after: ReadAfter,
    accept: AcceptEncoding,
    page: Page,
) -> Result<Response, ApiError> {
    let fresh_after = read_after
        .wait(
            &state.applied,
            state.settings.consistency_wait,
            &[View::Ticket],
        )
        .await?;
    let key = PageKey::Tickets {
        limit: page.limit,
        after: page.after.clone(),
    };
    state
        .pages
        .serve(key, fresh_after, accept, || async {
            let rows = queries::available_tickets(state.views(), page.after.as_deref(), page.limit)
                .await?;
            let cursor = rows.last().map(|row| row.id.clone());
            let tickets: Vec<TicketView> = rows.into_iter().map(TicketView::from).collect();
            page.render("/api/tickets", &tickets, cursor.as_deref())
        })
        .await
}

/// A ticket
#[utoipa::path(
    get,
    path = "/api/tickets/{id}",
    operation_id = "showTicket",
    tag = "tickets",
    params(("id" = String, Path, format = Uuid, description = "The ticket's id; anything else is 404."), ReadAfter, ("asOf" = Option<String>, Query, format = DateTime, description = "Time travel: the ticket as it was at this moment (RFC 3339, e.g. `2025-01-31T12:00:00Z`), folded from its events recorded until then, and without waiting for the read models. Not an RFC 3339 time: 400.")),
    responses(
        (status = 200, description = "The ticket.", body = TicketView),
        (status = 400, description = "\"asOf must be an RFC 3339 time, e.g. 2025-01-31T12:00:00Z\"; \"The query string is malformed\"; \"X-Consistency-Token is malformed\"; \"X-Consistency-Token names a change that was never made\".", body = ErrorBody),
        (status = 404, description = "\"Not Found\": no such ticket (with `asOf`: none yet at that moment).", body = ErrorBody),
        (status = 503, description = "\"The read model has not caught up with your last change yet; retry shortly\" (a token in the header only), or \"The service is busy; retry shortly\".", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(ticket_id = %raw_id))]
pub(crate) async fn show(
    State(state): State<Arc<AppState>>,
    read_after: ReadAfter,
    accept: AcceptEncoding,
    RawId(raw_id): RawId,
    AsOf(as_of): AsOf,
) -> Result<Response, ApiError> {
    let id = parse_id(&raw_id)?;
    if let Some(at) = as_of {
        return as_of::ticket(&state, &id, at)
            .await
            .map(IntoResponse::into_response);
    }
    let fresh_after = read_after
        .wait(
            &state.applied,
            state.settings.consistency_wait,
            &[View::Ticket],
        )
        .await?;
    let key = PageKey::Ticket { id: id.clone() };
    state
        .pages
        .serve(key, fresh_after, accept, || async {
            let row = queries::ticket(state.views(), &id)
                .await?
                .ok_or(ApiError::NotFound)?;
            Rendered::json(&TicketView::from(row))
        })
        .await
}
