//! Every error the API returns, mapped to the contract's status codes and its
//! body shape `{"errors":[{"message":"...","field":"..."}]}` in one place.

use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use ticketing_aggregates::{OrderError, TicketError};
use ticketing_eventstore::CommandError;
use utoipa::ToSchema;

/// One failed rule, optionally naming the offending body key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub(crate) struct ErrorEntry {
    /// What went wrong, in the contract's exact words.
    #[schema(example = "Title is required")]
    pub(crate) message: String,
    /// The request body's key the rule is about (validation errors only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false, example = "title")]
    pub(crate) field: Option<&'static str>,
}

impl ErrorEntry {
    pub(crate) fn field(field: &'static str, message: impl ToString) -> Self {
        Self {
            message: message.to_string(),
            field: Some(field),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("validation failed")]
    Validation(Vec<ErrorEntry>),
    #[error("{0}")]
    BadRequest(String),
    #[error("Not authorized")]
    NotAuthorized,
    #[error("Not Found")]
    NotFound,
    #[error("Request body is too large")]
    PayloadTooLarge,
    /// Too many attempts from one client or for one account; retry after
    /// the given number of seconds.
    #[error("Too many attempts; retry later")]
    TooManyRequests { retry_after_secs: u64 },
    /// Temporarily unable to answer; the client should retry.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Every error the API answers: one entry per failed rule.
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    errors: Vec<ErrorEntry>,
}

pub(crate) fn error_response(status: StatusCode, errors: Vec<ErrorEntry>) -> Response {
    (status, Json(ErrorBody { errors })).into_response()
}

fn single(message: String) -> Vec<ErrorEntry> {
    vec![ErrorEntry {
        message,
        field: None,
    }]
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Validation(errors) => error_response(StatusCode::BAD_REQUEST, errors),
            ApiError::BadRequest(message) => {
                error_response(StatusCode::BAD_REQUEST, single(message))
            }
            ApiError::NotAuthorized | ApiError::NotFound | ApiError::PayloadTooLarge => {
                let status = match self {
                    ApiError::NotAuthorized => StatusCode::UNAUTHORIZED,
                    ApiError::NotFound => StatusCode::NOT_FOUND,
                    _ => StatusCode::PAYLOAD_TOO_LARGE,
                };
                error_response(status, single(self.to_string()))
            }
            ApiError::TooManyRequests { retry_after_secs } => {
                let mut response =
                    error_response(StatusCode::TOO_MANY_REQUESTS, single(self.to_string()));
                let _ = response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs.max(1)));
                response
            }
            ApiError::Unavailable(message) => {
                let mut response = error_response(StatusCode::SERVICE_UNAVAILABLE, single(message));
                let _ = response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }
            ApiError::Unexpected(error) if is_overload(&error) => {
                // Every database connection stayed busy for the pool's whole
                // acquire timeout: the server is overloaded, not broken.
                tracing::warn!(error.cause_chain = ?error, "request shed: database pool exhausted");
                ApiError::Unavailable("The service is busy; retry shortly".to_owned())
                    .into_response()
            }
            ApiError::Unexpected(error) => {
                tracing::error!(error.cause_chain = ?error, error.message = %error, "request failed");
                error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    single("Something went wrong".to_owned()),
                )
            }
        }
    }
}

/// Whether `error` comes from waiting too long for a database connection.
fn is_overload(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<sqlx::Error>(),
            Some(sqlx::Error::PoolTimedOut)
        )
    })
}

/// How a domain rejection surfaces over HTTP: "Not Found" and "Not
/// authorized" keep their status, every other rule is a 400 with its message.
pub(crate) trait Rejection: std::error::Error + Send + Sync + 'static {
    fn is_not_found(&self) -> bool;
    fn is_not_authorized(&self) -> bool;
}

impl<E: Rejection> From<CommandError<E>> for ApiError {
    fn from(error: CommandError<E>) -> Self {
        match error {
            CommandError::Rejected(rejection) if rejection.is_not_found() => ApiError::NotFound,
            CommandError::Rejected(rejection) if rejection.is_not_authorized() => {
                ApiError::NotAuthorized
            }
            CommandError::Rejected(rejection) => ApiError::BadRequest(rejection.to_string()),
            contended @ CommandError::Contended { .. } => {
                ApiError::BadRequest(contended.to_string())
            }
            unavailable @ CommandError::Unavailable { .. } => {
                tracing::warn!(error.cause_chain = ?unavailable, "request shed: event store unavailable");
                ApiError::Unavailable("The service is busy; retry shortly".to_owned())
            }
            unknown @ CommandError::Unknown { .. } => {
                tracing::error!(error.cause_chain = ?unknown, "a commit's outcome is unknown");
                ApiError::Unavailable(
                    "The outcome of the request is unknown; retry it with the same Idempotency-Key"
                        .to_owned(),
                )
            }
            store @ CommandError::Store { .. } => ApiError::Unexpected(anyhow::Error::new(store)),
        }
    }
}

impl Rejection for TicketError {
    fn is_not_found(&self) -> bool {
        matches!(self, TicketError::NotFound)
    }
    fn is_not_authorized(&self) -> bool {
        matches!(self, TicketError::NotOwner)
    }
}

impl Rejection for OrderError {
    fn is_not_found(&self) -> bool {
        matches!(self, OrderError::NotFound)
    }
    fn is_not_authorized(&self) -> bool {
        matches!(self, OrderError::NotOwner)
    }
}

impl From<ticketing_projections::queries::QueryError> for ApiError {
    fn from(error: ticketing_projections::queries::QueryError) -> Self {
        ApiError::Unexpected(anyhow::Error::new(error))
    }
}

impl From<ticketing_sagas::PayError> for ApiError {
    fn from(error: ticketing_sagas::PayError) -> Self {
        use ticketing_sagas::PayError;
        match error {
            PayError::Order(rejection) => rejection.into(),
            PayError::Declined(message) => ApiError::BadRequest(message),
            PayError::Unavailable(message) => ApiError::Unavailable(message),
            unexpected @ PayError::Unexpected(_) => {
                ApiError::Unexpected(anyhow::Error::new(unexpected))
            }
        }
    }
}
