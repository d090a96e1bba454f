//! POST /api/payments: pay for an order with a card token.
//!
//! Thin: parse, authorize, hand over to the payment process manager
//! (`ticketing_sagas::payments`), map the outcome.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde_json::json;
use ticketing_sagas::PayRequest;

use crate::consistency::{with_token, ConsistencyToken};
use crate::current_user::SignedIn;
use crate::error::{ApiError, ErrorEntry};
use crate::idempotency::NewId;
use crate::json_body::JsonBody;
use crate::request_context::RequestContext;
use crate::routes::parse_id;
use crate::state::AppState;

#[tracing::instrument(skip_all, fields(user_id = %user.id))]
pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    NewId(payment_id): NewId,
    context: RequestContext,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let required = |field: &'static str, message: &'static str| {
        let value = body.str(field).map(str::trim).filter(|v| !v.is_empty());
        (value, ErrorEntry::field(field, message))
    };
    let (token, token_error) = required("token", "Token must be provided");
    let (order_id, order_error) = required("orderId", "OrderId must be provided");
    let (Some(token), Some(order_id)) = (token, order_id) else {
        let errors = [(token, token_error), (order_id, order_error)]
            .into_iter()
            .filter(|(value, _)| value.is_none())
            .map(|(_, error)| error)
            .collect();
        return Err(ApiError::Validation(errors));
    };
    let request = PayRequest {
        order_id: parse_id(order_id)?,
        user_id: user.id.clone(),
        token: token.to_owned(),
        payment_id: payment_id.to_string(),
    };
    let metadata = context.metadata(&user.id);
    let paid = state.payments.pay(&request, &metadata).await?;
    let token = ConsistencyToken::default().order(&request.order_id, paid.order_version);
    Ok(with_token(
        &token,
        (StatusCode::CREATED, Json(json!({ "id": paid.payment_id }))),
    ))
}
