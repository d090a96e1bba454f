//! `?limit=&after=` on list endpoints. The body stays the contract's plain
//! array; the next page is announced in a `Link: <...>; rel="next"` header.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Query};
use axum::http::header::LINK;
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use std::sync::Arc;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::error::ApiError;
use crate::page_cache::Rendered;
use crate::state::AppState;

/// A page of a list: `?limit=&after=`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct Page {
    /// How many items at most: 1 to `LIST_LIMIT` (1000 by default, also
    /// the page size when absent). Anything else is 400.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub(crate) limit: i64,
    /// Continue after this item: the `after` of the `Link` header's next
    /// page (the last id of the previous page). Not an id: 400.
    #[param(format = Uuid)]
    pub(crate) after: Option<String>,
}

/// A page of an aggregate's event history: `?limit=&after=`, where
/// `after` is the `globalPosition` of the previous page's last event.
/// Unlike [`Page`], the cursor is kept as sent: the history handlers check
/// it (400 "after must be the globalPosition of an event") once they know
/// the aggregate is the caller's.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryPage {
    /// How many events at most: 1 to `LIST_LIMIT` (1000 by default, also
    /// the page size when absent). Anything else is 400.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub(crate) limit: i64,
    /// Continue after this event: the `after` of the `Link` header's next
    /// page (the `globalPosition` of the previous page's last event). Not a
    /// non-negative integer: 400.
    #[param(value_type = Option<u64>, minimum = 0)]
    pub(crate) after: Option<String>,
}

/// `limit` (checked: 1 to `LIST_LIMIT`) and `after` (as sent, if not empty).
async fn limit_and_after(
    parts: &mut Parts,
    state: &Arc<AppState>,
) -> Result<(i64, Option<String>), ApiError> {
    let max = state.settings.list_limit;
    let invalid = || ApiError::BadRequest(format!("limit must be an integer from 1 to {max}"));
    let Query(params) = Query::<HashMap<String, String>>::from_request_parts(parts, state)
        .await
        .map_err(|_| ApiError::BadRequest("The query string is malformed".to_owned()))?;
    let limit = match params.get("limit") {
        None => max,
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=max).contains(l))
            .ok_or_else(invalid)?,
    };
    let after = params.get("after").filter(|a| !a.is_empty()).cloned();
    Ok((i64::from(limit), after))
}

impl FromRequestParts<Arc<AppState>> for Page {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let (limit, after) = limit_and_after(parts, state).await?;
        // Cursors are ids: anything else cannot continue a list (and text
        // PostgreSQL refuses, such as a NUL, must not reach the query).
        let after =
            match after {
                None => None,
                Some(raw) => Some(Uuid::try_parse(&raw).map(|id| id.to_string()).map_err(
                    |_| {
                        ApiError::BadRequest(
                            "after must be the id of an item of the list".to_owned(),
                        )
                    },
                )?),
            };
        Ok(Page { limit, after })
    }
}

impl FromRequestParts<Arc<AppState>> for HistoryPage {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let (limit, after) = limit_and_after(parts, state).await?;
        Ok(HistoryPage { limit, after })
    }
}

impl HistoryPage {
    /// The events as a JSON array, with a link to the next page when this
    /// one is full (see [`Page::render`]).
    pub(crate) fn respond<T: Serialize>(
        &self,
        path: &str,
        items: Vec<T>,
        cursor: Option<String>,
    ) -> Response {
        let link = next_link(self.limit, path, items.len(), cursor.as_deref());
        let mut response = Json(items).into_response();
        if let Some(link) = link {
            let _ = response.headers_mut().insert(LINK, link);
        }
        response
    }
}

impl Page {
    /// The items as a JSON array, with a link to the next page when this one
    /// is full (`cursor`: the value to continue after); rendered for the
    /// page cache.
    pub(crate) fn render<T: Serialize>(
        &self,
        path: &str,
        items: &[T],
        cursor: Option<&str>,
    ) -> Result<Rendered, ApiError> {
        let mut rendered = Rendered::json(&items)?;
        rendered.link = next_link(self.limit, path, items.len(), cursor);
        Ok(rendered)
    }
}

/// The `Link` to the next page when this one (of `len` items) is full.
fn next_link(limit: i64, path: &str, len: usize, cursor: Option<&str>) -> Option<HeaderValue> {
    let full = i64::try_from(len).is_ok_and(|n| n == limit);
    let cursor = cursor.filter(|_| full)?;
    HeaderValue::from_str(&format!(
        "<{path}?limit={limit}&after={cursor}>; rel=\"next\""
    ))
    .ok()
}
