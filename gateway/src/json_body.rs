//! A JSON body extractor that reports every client mistake (wrong content
//! type, malformed JSON, not an object, too large) as a 4xx in the contract's
//! shape, instead of axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// The request body as a JSON object; fields are validated by each route,
/// so that every failed rule can be reported at once.
pub(crate) struct JsonBody(pub(crate) Map<String, Value>);

impl JsonBody {
    /// The field as a string, if present and a string.
    pub(crate) fn str(&self, field: &str) -> Option<&str> {
        self.0.get(field).and_then(Value::as_str)
    }

    pub(crate) fn get(&self, field: &str) -> Option<&Value> {
        self.0.get(field)
    }
}

fn is_json(request: &Request) -> bool {
    let Some(value) = request.headers().get(CONTENT_TYPE) else {
        return false;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(&request) {
            return Err(ApiError::BadRequest(
                "Content-Type must be application/json".to_owned(),
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::BadRequest("Failed to read the request body".to_owned())
                }
            })?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(JsonBody(map)),
            Ok(_) => Err(ApiError::BadRequest(
                "Request body must be a JSON object".to_owned(),
            )),
            Err(_) => Err(ApiError::BadRequest(
                "Request body must be valid JSON".to_owned(),
            )),
        }
    }
}
