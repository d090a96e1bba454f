//! POST /api/payments: pay for an order with a card token.
//!
//! Thin: parse, authorize, hand over to the payment process manager
//! (`ticketing_sagas::payments`), map the outcome.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use ticketing_sagas::PayRequest;
use utoipa::ToSchema;

use crate::consistency::{with_token, ConsistencyToken};
use crate::current_user::SignedIn;
use crate::error::{ApiError, ErrorBody, ErrorEntry};
use crate::idempotency::NewId;
use crate::json_body::JsonBody;
use crate::request_context::RequestContext;
use crate::routes::parse_id;
use crate::state::AppState;
use crate::views::PaymentView;

/// `{token, orderId}`: a card token to pay an order with.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub(crate) struct NewPayment {
    /// A Stripe card token (`tok_...`); anything else is refused with
    /// "The payment token is not valid". Trimmed; must not be empty.
    #[schema(example = "tok_visa")]
    token: String,
    /// Trimmed; must not be empty. Not a known order's id: 404.
    #[schema(format = Uuid)]
    order_id: String,
}

impl NewPayment {
    fn parse(body: &JsonBody) -> Result<Self, ApiError> {
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
        Ok(NewPayment {
            token: token.to_owned(),
            order_id: order_id.to_owned(),
        })
    }
}

/// Pay for an order
///
/// Charges the order's price (in cents, `usd`) to the card token; the order
/// becomes `complete`. A second payment for the same order never charges
/// twice.
#[utoipa::path(
    post,
    path = "/api/payments",
    operation_id = "createPayment",
    tag = "payments",
    request_body = NewPayment,
    security(("session" = []), ("bearer" = [])),
    responses(
        (status = 201, description = "Paid: the order is `complete`.", body = PaymentView, headers(
            ("X-Consistency-Token" = String, description = "The order's write, for read-your-writes on later GETs.")
        )),
        (status = 400, description = "\"Token must be provided\" (field `token`); \"OrderId must be provided\" (field `orderId`); \"The payment token is not valid\"; the card's decline message; \"Cannot pay for an cancelled order\"; \"Order has already been paid\"; \"A payment for this order is already in progress\"; \"Too many failed payment attempts for this order\"; a body that is not a JSON object or not sent as `application/json`.", body = ErrorBody),
        (status = 401, description = "\"Not authorized\": signed out, or not the order's buyer.", body = ErrorBody),
        (status = 404, description = "\"Not Found\": no such order.", body = ErrorBody),
        (status = 503, description = "The payment provider is unreachable or misconfigured, or \"The service is busy; retry shortly\".", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.id))]
pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    NewId(payment_id): NewId,
    context: RequestContext,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let NewPayment { token, order_id } = NewPayment::parse(&body)?;
    let request = PayRequest {
        order_id: parse_id(&order_id)?,
        user_id: user.id.clone(),
        token,
        payment_id: payment_id.to_string(),
    };
    let metadata = context.metadata(&user.id);
    let paid = state.payments.pay(&request, &metadata).await?;
    let token = ConsistencyToken::default().order(&request.order_id, paid.order_version);
    Ok(with_token(
        &token,
        (
            StatusCode::CREATED,
            Json(PaymentView {
                id: paid.payment_id,
            }),
        ),
    ))
}
