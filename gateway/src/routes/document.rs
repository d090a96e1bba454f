//! `GET /api/openapi.json`: the API's OpenAPI document.

use anyhow::anyhow;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::openapi::served;

/// The OpenAPI document
///
/// This document (OpenAPI 3.1), as `docs/openapi.json` commits it.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    operation_id = "openapi",
    tag = "operations",
    responses(
        (status = 200, description = "The document.", body = Object, content_type = "application/json"),
    )
)]
pub(crate) async fn openapi() -> Result<Response, ApiError> {
    let text = served().map_err(|e| anyhow!("the OpenAPI document does not serialize: {e}"))?;
    Ok(([(CONTENT_TYPE, "application/json")], text).into_response())
}
