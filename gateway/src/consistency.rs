//! Read-your-writes. Every command response carries `X-Consistency-Token`:
//! the aggregates it changed and the sequence each reached, e.g.
//! `order:<id>:1,ticket:<id>:2`. A query that sends the token back waits,
//! bounded, until the read models have applied those sequences, so it never
//! shows the client a state older than its own write. Without a token,
//! queries read what is there. Per-aggregate sequences (rather than one
//! global position) are exact even though partitions are projected in
//! parallel.

use std::time::Duration;

use anyhow::Context;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::ApiError;

pub(crate) const HEADER: &str = "x-consistency-token";
const MAX_MARKS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    Ticket,
    Order,
}

impl View {
    fn name(self) -> &'static str {
        match self {
            View::Ticket => "ticket",
            View::Order => "order",
        }
    }

    fn sequence_query(self) -> &'static str {
        match self {
            View::Ticket => "SELECT last_sequence FROM ticket_views WHERE id = $1",
            View::Order => "SELECT last_sequence FROM order_views WHERE id = $1",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Mark {
    view: View,
    id: String,
    sequence: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ConsistencyToken(Vec<Mark>);

impl ConsistencyToken {
    fn mark(mut self, view: View, id: &str, version: u64) -> Self {
        let sequence = i64::try_from(version).map_or(i64::MAX, |v| v.saturating_add(1));
        self.0.push(Mark {
            view,
            id: id.to_owned(),
            sequence,
        });
        self
    }

    /// The ticket `id` as of its API `version` (sequence = version + 1).
    pub(crate) fn ticket(self, id: &str, version: u64) -> Self {
        self.mark(View::Ticket, id, version)
    }

    pub(crate) fn order(self, id: &str, version: u64) -> Self {
        self.mark(View::Order, id, version)
    }

    pub(crate) fn header_value(&self) -> String {
        self.0
            .iter()
            .map(|m| format!("{}:{}:{}", m.view.name(), m.id, m.sequence))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn parse(raw: &str) -> Option<Self> {
        let marks = raw
            .split(',')
            .map(|mark| {
                let mut parts = mark.trim().splitn(3, ':');
                let view = match parts.next()? {
                    "ticket" => View::Ticket,
                    "order" => View::Order,
                    _ => return None,
                };
                let id = Uuid::try_parse(parts.next()?).ok()?.to_string();
                let sequence = parts.next()?.parse::<i64>().ok().filter(|s| *s > 0)?;
                Some(Mark { view, id, sequence })
            })
            .collect::<Option<Vec<_>>>()?;
        (!marks.is_empty() && marks.len() <= MAX_MARKS).then_some(ConsistencyToken(marks))
    }

    /// Waits until every marked aggregate's view reached its sequence.
    pub(crate) async fn wait(&self, pool: &PgPool, timeout: Duration) -> Result<(), ApiError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        for mark in &self.0 {
            loop {
                let applied: Option<i64> = sqlx::query_scalar(mark.view.sequence_query())
                    .bind(&mark.id)
                    .fetch_optional(pool)
                    .await
                    .context("Failed to read a view's sequence")?;
                if applied.is_some_and(|applied| applied >= mark.sequence) {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(ApiError::Unavailable(
                        "The read model has not caught up with your last change yet; retry shortly"
                            .to_owned(),
                    ));
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(20));
            }
        }
        Ok(())
    }
}

/// `response` with the token in its `X-Consistency-Token` header.
pub(crate) fn with_token(token: &ConsistencyToken, response: impl IntoResponse) -> Response {
    let mut response = response.into_response();
    if let Ok(value) = HeaderValue::from_str(&token.header_value()) {
        let _ = response.headers_mut().insert(HEADER, value);
    }
    response
}

/// The token a query was sent with, if any.
pub(crate) struct ReadAfter(pub(crate) Option<ConsistencyToken>);

impl ReadAfter {
    /// Waits for the token's writes, if the query sent one.
    pub(crate) async fn wait(&self, pool: &PgPool, timeout: Duration) -> Result<(), ApiError> {
        match &self.0 {
            Some(token) => token.wait(pool, timeout).await,
            None => Ok(()),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ReadAfter {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(HEADER) else {
            return Ok(ReadAfter(None));
        };
        value
            .to_str()
            .ok()
            .and_then(ConsistencyToken::parse)
            .map(|token| ReadAfter(Some(token)))
            .ok_or_else(|| ApiError::BadRequest("X-Consistency-Token is malformed".to_owned()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_through_its_header_value() {
        let ticket = Uuid::now_v7().to_string();
        let order = Uuid::now_v7().to_string();
        let token = ConsistencyToken::default()
            .order(&order, 0)
            .ticket(&ticket, 1);
        let value = token.header_value();
        assert_eq!(value, format!("order:{order}:1,ticket:{ticket}:2"));
        assert_eq!(ConsistencyToken::parse(&value), Some(token));
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        let id = Uuid::now_v7();
        for raw in [
            "".to_owned(),
            "ticket".to_owned(),
            format!("ticket:{id}"),
            format!("ticket:{id}:0"),
            format!("ticket:{id}:-3"),
            format!("ticket:{id}:x"),
            format!("payment:{id}:1"),
            "ticket:not-a-uuid:1".to_owned(),
            vec![format!("ticket:{id}:1"); 9].join(","),
        ] {
            assert_eq!(ConsistencyToken::parse(&raw), None, "{raw}");
        }
    }
}
