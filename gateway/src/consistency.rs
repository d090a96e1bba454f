//! Read-your-writes. Every command response carries `X-Consistency-Token`:
//! the aggregates it changed and the sequence each reached, e.g.
//! `order:<id>:1,ticket:<id>:2`. A query that sends the token back waits,
//! bounded, until the read models have applied those sequences, so it never
//! shows the client a state older than its own write. Without a token,
//! queries read what is there. Per-aggregate sequences (rather than one
//! global position) are exact even though partitions are projected in
//! parallel.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{COOKIE as COOKIE_HEADER, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sqlx::PgPool;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

pub(crate) const HEADER: &str = "x-consistency-token";
/// The cookie carrying the same token for clients that send no header
/// (a browser app written for a platform that read its own database).
const COOKIE: &str = "consistency";
/// How long the cookie lives: long enough for the next page load.
const COOKIE_MAX_AGE_SECS: u64 = 60;
const MAX_MARKS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum View {
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
            .split([',', '|'])
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

    /// Waits until every marked aggregate's view reached its sequence:
    /// one query checks the views and the event store; a mark naming a
    /// change the store does not hold is refused at once (it would never
    /// be applied); the rest wait on `watch`, holding no connection.
    pub(crate) async fn wait(
        &self,
        watch: &AppliedWatch,
        timeout: Duration,
    ) -> Result<(), ApiError> {
        let kinds: Vec<&str> = self.0.iter().map(|m| m.view.name()).collect();
        let ids: Vec<&str> = self.0.iter().map(|m| m.id.as_str()).collect();
        let marks = watch.sequences(&kinds, &ids).await?;
        let mut pending = Vec::new();
        for (mark, (applied, stored)) in self.0.iter().zip(marks) {
            if mark.sequence > stored {
                return Err(ApiError::BadRequest(
                    "X-Consistency-Token names a change that was never made".to_owned(),
                ));
            }
            if applied < mark.sequence {
                pending.push(watch.register(mark));
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        // Registered together above, so they are watched at once.
        let all = async {
            for woken in pending {
                // Dropped unsent only if the watch itself went away.
                if woken.await.is_err() {
                    return false;
                }
            }
            true
        };
        match tokio::time::timeout(timeout, all).await {
            Ok(true) => Ok(()),
            Ok(false) | Err(_) => Err(ApiError::Unavailable(
                "The read model has not caught up with your last change yet; retry shortly"
                    .to_owned(),
            )),
        }
    }
}

/// How often the watch reads the views while reads wait on it.
const WATCH_TICK: Duration = Duration::from_millis(5);

/// The views' applied sequences, watched for every waiting read of this
/// process by one task: one query per tick for all of them together, none
/// while nobody waits. (A LISTEN fed by the projection would need a NOTIFY
/// in its commits, which serializes them; the projection may also run in
/// another process.)
///
/// With a read replica (`READ_DATABASE_URL`) the applied sequences are read
/// where the views are read, the replica: a wait ends when the replica
/// shows the write, so the query that follows, also on the replica, sees
/// it. Whether a mark names a write that exists is asked of the primary:
/// a write the replica has not received yet is not "never made".
#[derive(Clone)]
pub(crate) struct AppliedWatch {
    /// The event store (and the views, without a replica).
    primary: PgPool,
    /// Where the views are read, if not on the primary.
    replica: Option<PgPool>,
    waiting: Arc<Mutex<Waiting>>,
}

/// A read waiting for a sequence, and how to wake it.
type Waiter = (i64, oneshot::Sender<()>);

#[derive(Default)]
struct Waiting {
    /// Per view row: the sequences reads wait for, and whom to wake.
    marks: HashMap<(View, String), Vec<Waiter>>,
    /// Whether the watch task runs (it stops when nobody waits).
    watching: bool,
}

impl AppliedWatch {
    /// Watches the views on `replica` if given, else on `primary`.
    pub(crate) fn new(primary: PgPool, replica: Option<PgPool>) -> Self {
        Self {
            primary,
            replica,
            waiting: Arc::default(),
        }
    }

    /// Each mark's applied sequence (in its view) and stored sequence (in
    /// the event store), in the order of `kinds` and `ids`.
    async fn sequences(&self, kinds: &[&str], ids: &[&str]) -> anyhow::Result<Vec<(i64, i64)>> {
        let Some(replica) = &self.replica else {
            // One round trip when both live in the same database.
            return sqlx::query_as(
                "SELECT coalesce(CASE m.kind \
                            WHEN 'ticket' THEN (SELECT last_sequence FROM ticket_views WHERE id = m.id) \
                            ELSE (SELECT last_sequence FROM order_views WHERE id = m.id) END, 0), \
                        coalesce((SELECT max(sequence) FROM events \
                                  WHERE aggregate_type = CASE m.kind WHEN 'ticket' THEN 'Ticket' ELSE 'Order' END \
                                    AND aggregate_id = m.id), 0) \
                 FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS m(kind, id, n) ORDER BY m.n",
            )
            .bind(kinds)
            .bind(ids)
            .fetch_all(&self.primary)
            .await
            .context("Failed to read the views' and the store's sequences");
        };
        let applied = sqlx::query_scalar::<_, i64>(
            "SELECT coalesce(CASE m.kind \
                        WHEN 'ticket' THEN (SELECT last_sequence FROM ticket_views WHERE id = m.id) \
                        ELSE (SELECT last_sequence FROM order_views WHERE id = m.id) END, 0) \
             FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS m(kind, id, n) ORDER BY m.n",
        )
        .bind(kinds)
        .bind(ids)
        .fetch_all(replica);
        let stored = sqlx::query_scalar::<_, i64>(
            "SELECT coalesce((SELECT max(sequence) FROM events \
                              WHERE aggregate_type = CASE m.kind WHEN 'ticket' THEN 'Ticket' ELSE 'Order' END \
                                AND aggregate_id = m.id), 0) \
             FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS m(kind, id, n) ORDER BY m.n",
        )
        .bind(kinds)
        .bind(ids)
        .fetch_all(&self.primary);
        let (applied, stored) = tokio::join!(applied, stored);
        let applied = applied.context("Failed to read the views' sequences on the read replica")?;
        let stored = stored.context("Failed to read the store's sequences")?;
        Ok(applied.into_iter().zip(stored).collect())
    }

    /// Resolves once `mark`'s view reached its sequence (or never, if the
    /// caller gives up first: its entry goes at the next tick).
    fn register(&self, mark: &Mark) -> oneshot::Receiver<()> {
        let (wake, woken) = oneshot::channel();
        let start = {
            let mut waiting = self.lock();
            waiting
                .marks
                .entry((mark.view, mark.id.clone()))
                .or_default()
                .push((mark.sequence, wake));
            !std::mem::replace(&mut waiting.watching, true)
        };
        if start {
            drop(tokio::spawn(self.clone().watch()));
        }
        woken
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        // A panic while holding it cannot leave the map inconsistent.
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn watch(self) {
        loop {
            let (kinds, ids): (Vec<&'static str>, Vec<String>) = {
                let mut waiting = self.lock();
                waiting.marks.retain(|_, waiters| {
                    waiters.retain(|(_, wake)| !wake.is_closed());
                    !waiters.is_empty()
                });
                if waiting.marks.is_empty() {
                    waiting.watching = false;
                    return;
                }
                waiting
                    .marks
                    .keys()
                    .map(|(view, id)| (view.name(), id.clone()))
                    .unzip()
            };
            match self.applied(&kinds, &ids).await {
                Ok(applied) => {
                    let mut waiting = self.lock();
                    for (view, id, sequence) in applied {
                        if let Some(waiters) = waiting.marks.get_mut(&(view, id)) {
                            for (_, wake) in
                                waiters.extract_if(.., |(wanted, _)| *wanted <= sequence)
                            {
                                let _ = wake.send(());
                            }
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(error.message = %error, "cannot read the views' sequences for waiting reads");
                }
            }
            tokio::time::sleep(WATCH_TICK).await;
        }
    }

    async fn applied(
        &self,
        kinds: &[&str],
        ids: &[String],
    ) -> sqlx::Result<Vec<(View, String, i64)>> {
        // One primary-key lookup per mark, even in a generic plan made while
        // the views were empty (checked with EXPLAIN); a plain join's would
        // be a hash join that scans the views whole once they have grown.
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT m.kind, m.id, v.last_sequence \
             FROM unnest($1::text[], $2::text[]) AS m(kind, id) \
             CROSS JOIN LATERAL ( \
               SELECT last_sequence FROM ticket_views WHERE m.kind = 'ticket' AND id = m.id \
               UNION ALL \
               SELECT last_sequence FROM order_views WHERE m.kind = 'order' AND id = m.id \
             ) AS v",
        )
        .bind(kinds)
        .bind(ids)
        .fetch_all(self.replica.as_ref().unwrap_or(&self.primary))
        .await?;
        Ok(rows
            .into_iter()
            .map(|(kind, id, sequence)| {
                let view = if kind == "ticket" {
                    View::Ticket
                } else {
                    View::Order
                };
                (view, id, sequence)
            })
            .collect())
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

/// The token a query was sent with, if any: the header, or else the
/// cookie the gateway set on the client's last command.
pub(crate) enum ReadAfter {
    None,
    /// Sent explicitly: waited on in full, 503 when the wait runs out.
    Header(ConsistencyToken),
    /// From the cookie: only the marks of the views the query reads are
    /// waited on, and a wait that runs out serves what is there (a page
    /// load must not fail because the read side is slow).
    Cookie(ConsistencyToken),
}

impl ReadAfter {
    /// Waits for the token's writes to the `views` this query reads.
    /// Returns when the wait ended if there was one: a page computed from
    /// a query started before then may not show those writes (see
    /// `page_cache`).
    pub(crate) async fn wait(
        &self,
        watch: &AppliedWatch,
        timeout: Duration,
        views: &[View],
    ) -> Result<Option<Instant>, ApiError> {
        match self {
            ReadAfter::None => Ok(None),
            ReadAfter::Header(token) => {
                token.wait(watch, timeout).await?;
                Ok(Some(Instant::now()))
            }
            ReadAfter::Cookie(token) => {
                let read = ConsistencyToken(
                    token
                        .0
                        .iter()
                        .filter(|m| views.contains(&m.view))
                        .cloned()
                        .collect(),
                );
                if read.0.is_empty() {
                    return Ok(None);
                }
                match read.wait(watch, timeout).await {
                    // Served as is, but still no older than a fresh query.
                    Ok(()) | Err(ApiError::Unavailable(_)) => Ok(Some(Instant::now())),
                    Err(other) => Err(other),
                }
            }
        }
    }
}

/// The token, as GETs that wait on it document it.
impl utoipa::IntoParams for ReadAfter {
    fn into_params(
        _parameter_in_provider: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        use utoipa::openapi::Required;

        let token = || {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .examples(["ticket:0190a4c4-5a2b-7cc0-8e1f-3b1d2c4e5f60:1"])
        };
        vec![
            ParameterBuilder::new()
                .name("X-Consistency-Token")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "A command's `X-Consistency-Token` (`<ticket|order>:<id>:<sequence>`, \
                     comma-separated, at most 8): the answer waits, bounded by \
                     `CONSISTENCY_WAIT_MS`, until the read models show those writes, \
                     else 503. Malformed, or naming a change never made: 400.",
                ))
                .schema(Some(token()))
                .build(),
            ParameterBuilder::new()
                .name(COOKIE)
                .parameter_in(ParameterIn::Cookie)
                .required(Required::False)
                .description(Some(
                    "The cookie commands set with the same token (`|`-separated), used \
                     when no header is sent: only the marks of the views read are \
                     waited on, and a wait that runs out serves what is there. A \
                     malformed cookie is ignored.",
                ))
                .schema(Some(token()))
                .build(),
        ]
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ReadAfter {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(HEADER) else {
            // A stale or mangled cookie is ignored: the client never chose it.
            return Ok(cookie_token(&parts.headers).map_or(ReadAfter::None, ReadAfter::Cookie));
        };
        value
            .to_str()
            .ok()
            .and_then(ConsistencyToken::parse)
            .map(ReadAfter::Header)
            .ok_or_else(|| ApiError::BadRequest("X-Consistency-Token is malformed".to_owned()))
    }
}

fn cookie_token(headers: &HeaderMap) -> Option<ConsistencyToken> {
    headers
        .get_all(COOKIE_HEADER)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .and_then(|(_, value)| ConsistencyToken::parse(value))
}

/// Sets the consistency cookie on every response carrying a token: the
/// client's earlier marks (from its cookie) merged with the new ones, the
/// newest mark per aggregate kept, at most [`MAX_MARKS`] in all. HttpOnly,
/// SameSite=Lax, path `/api`, short-lived.
pub(crate) async fn remember_token(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let earlier = cookie_token(request.headers());
    let mut response = next.run(request).await;
    let Some(new) = response
        .headers()
        .get(HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(ConsistencyToken::parse)
    else {
        return response;
    };
    let mut marks = new.0;
    for mark in earlier.map(|token| token.0).unwrap_or_default() {
        if !marks.iter().any(|m| m.view == mark.view && m.id == mark.id) {
            marks.push(mark);
        }
    }
    marks.truncate(MAX_MARKS);
    let value = marks
        .iter()
        .map(|m| format!("{}:{}:{}", m.view.name(), m.id, m.sequence))
        .collect::<Vec<_>>()
        .join("|");
    let secure = if state.settings.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE}={value}; Path=/api; Max-Age={COOKIE_MAX_AGE_SECS}; HttpOnly; SameSite=Lax{secure}"
    );
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        let _ = response.headers_mut().append(SET_COOKIE, cookie);
    }
    response
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
