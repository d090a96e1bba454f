//! Who and what a command comes from, recorded with its events: the request
//! id (causation), the correlation id (given by the client as
//! `X-Correlation-Id`, else the request id) and the W3C trace context: the
//! request span's own when tracing is on (so consumers of the events become
//! its children), else the caller's `traceparent` as sent.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use ticketing_eventstore::trace_context::{self, TRACEPARENT};
use ticketing_eventstore::CommandMetadata;
use uuid::Uuid;

pub(crate) const REQUEST_ID: &str = "x-request-id";
const CORRELATION_ID: &str = "x-correlation-id";
const MAX_ID_LEN: usize = 128;

pub(crate) struct RequestContext {
    request_id: String,
    correlation_id: String,
    traceparent: Option<String>,
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)?
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= MAX_ID_LEN)
        .map(str::to_owned)
}

impl RequestContext {
    pub(crate) fn metadata(&self, user_id: &str) -> CommandMetadata {
        CommandMetadata {
            correlation_id: self.correlation_id.clone(),
            causation_id: self.request_id.clone(),
            user_id: Some(user_id.to_owned()),
            traceparent: self.traceparent.clone(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let request_id =
            header(&parts.headers, REQUEST_ID).unwrap_or_else(|| Uuid::now_v7().to_string());
        Ok(RequestContext {
            correlation_id: header(&parts.headers, CORRELATION_ID)
                .unwrap_or_else(|| request_id.clone()),
            request_id,
            traceparent: trace_context::current_traceparent()
                .or_else(|| header(&parts.headers, TRACEPARENT)),
        })
    }
}
