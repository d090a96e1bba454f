//! `Idempotency-Key` on POSTs: the first request with a key runs and its
//! response is remembered per user; a retry with the same key and the same
//! request gets that response back (`Idempotent-Replayed: true`) and runs
//! nothing. The key also fixes the id of whatever the request creates, so a
//! request re-run after a crash mid-way finds its own aggregate instead of
//! creating a second one, and so does a retry after a server error: the
//! key is given back with its resource id kept.
//!
//! Every run holding a key holds it under a token of its own. A run slower
//! than the takeover is superseded: its token is no longer the key's, so it
//! can neither record its response nor give the key back over its
//! successor's claim.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::{to_bytes, Body};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

const HEADER: &str = "idempotency-key";
const REPLAYED: &str = "idempotent-replayed";
/// A claim older than this whose response was never recorded belongs to a
/// process that died; the key may be taken over.
const ABANDONED_AFTER_SECS: f64 = 60.0;
/// How long a retry waits for a concurrent first run to finish.
const WAIT_FOR_FIRST_RUN: Duration = Duration::from_secs(10);

/// The id given to this request's new aggregate.
#[derive(Debug, Clone, Copy)]
struct AssignedId(Uuid);

/// The id for the aggregate a request creates: fixed by its Idempotency-Key
/// when it has one, fresh otherwise.
pub(crate) struct NewId(pub(crate) Uuid);

impl<S: Send + Sync> FromRequestParts<S> for NewId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let assigned = parts.extensions.get::<AssignedId>().map(|a| a.0);
        Ok(NewId(assigned.unwrap_or_else(Uuid::now_v7)))
    }
}

pub(crate) async fn idempotent(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    run(&state, request, next)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// A run's hold on a key.
#[derive(Debug, Clone, Copy)]
struct Held {
    resource_id: Uuid,
    token: Uuid,
}

enum Claim {
    Acquired(Held),
    Completed(StoredResponse),
    Mismatch,
    InFlight,
}

struct StoredResponse {
    status: i16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

async fn run(state: &AppState, request: Request, next: Next) -> Result<Response, ApiError> {
    let Some(raw_key) = request.headers().get(HEADER) else {
        return Ok(next.run(request).await);
    };
    // Signed-out requests go through, so the handler answers 401 first.
    let Some(user) = state.sessions.verify_request(request.headers()) else {
        return Ok(next.run(request).await);
    };
    let key = raw_key
        .to_str()
        .ok()
        .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::BadRequest(
                "Idempotency-Key must be 1 to 255 visible ASCII characters".to_owned(),
            )
        })?
        .to_owned();
    let (mut parts, body) = request.into_parts();
    let body = to_bytes(body, state.settings.body_limit_bytes)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)?;
    let fingerprint = Sha256::new()
        .chain_update(parts.method.as_str())
        .chain_update(b" ")
        .chain_update(parts.uri.path())
        .chain_update(b"\n")
        .chain_update(&body)
        .finalize()
        .to_vec();

    let deadline = tokio::time::Instant::now() + WAIT_FOR_FIRST_RUN;
    let held = loop {
        match claim(
            &state.pool,
            &user.id,
            &key,
            &fingerprint,
            ABANDONED_AFTER_SECS,
        )
        .await?
        {
            Claim::Acquired(held) => break held,
            Claim::Completed(stored) => return stored.into_response(),
            Claim::Mismatch => {
                return Err(ApiError::BadRequest(
                    "Idempotency-Key was already used for a different request".to_owned(),
                ))
            }
            Claim::InFlight if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Claim::InFlight => {
                return Err(ApiError::BadRequest(
                    "A request with this Idempotency-Key is still in progress; retry later"
                        .to_owned(),
                ))
            }
        }
    };

    let _ = parts.extensions.insert(AssignedId(held.resource_id));
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    if response.status().is_server_error() {
        // Nothing reliable to replay: the client's retry runs again, on the
        // same resource id (what this run created, if anything, is found).
        give_back(&state.pool, &user.id, &key, held.token).await?;
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    let body = to_bytes(body, usize::MAX)
        .await
        .context("Failed to buffer the response")?;
    let stored = StoredResponse {
        status: i16::try_from(parts.status.as_u16()).unwrap_or(500),
        headers: replayable_headers(&parts.headers),
        body: body.to_vec(),
    };
    remember(&state.pool, &user.id, &key, held.token, &stored).await?;
    Ok(Response::from_parts(parts, Body::from(body)))
}

/// Headers that describe the response itself (not the connection, the
/// session or this particular attempt).
fn replayable_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "set-cookie" | "date" | "x-request-id" | "content-length"
            )
        })
        .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_owned())))
        .collect()
}

impl StoredResponse {
    fn into_response(self) -> Result<Response, ApiError> {
        let status = u16::try_from(self.status)
            .ok()
            .and_then(|s| StatusCode::from_u16(s).ok())
            .context("A stored idempotent response has an invalid status")?;
        let mut response = (status, self.body).into_response();
        for (name, value) in self.headers {
            if let (Ok(name), Ok(value)) =
                (HeaderName::try_from(name), HeaderValue::try_from(value))
            {
                let _ = response.headers_mut().insert(name, value);
            }
        }
        let _ = response
            .headers_mut()
            .insert(REPLAYED, HeaderValue::from_static("true"));
        Ok(response)
    }
}

/// Claims the key for a run: a new key, one given back after a server
/// error, or one whose run has held it past `takeover_after_secs`.
async fn claim(
    pool: &PgPool,
    user_id: &str,
    key: &str,
    fingerprint: &[u8],
    takeover_after_secs: f64,
) -> anyhow::Result<Claim> {
    let new_id = Uuid::now_v7();
    let token = Uuid::new_v4();
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (user_id, idempotency_key, request_hash, resource_id, claim_token)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(user_id)
    .bind(key)
    .bind(fingerprint)
    .bind(new_id)
    .bind(token)
    .execute(pool)
    .await
    .context("Failed to claim the idempotency key")?;
    if inserted.rows_affected() == 1 {
        return Ok(Claim::Acquired(Held {
            resource_id: new_id,
            token,
        }));
    }
    type Row = (
        Vec<u8>,
        Uuid,
        Option<i16>,
        Option<serde_json::Value>,
        Option<Vec<u8>>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT request_hash, resource_id, response_status, response_headers, response_body
         FROM idempotency_keys WHERE user_id = $1 AND idempotency_key = $2",
    )
    .bind(user_id)
    .bind(key)
    .fetch_optional(pool)
    .await
    .context("Failed to read the idempotency key")?;
    let Some((hash, resource_id, status, headers, body)) = row else {
        // Deleted in between: claim it afresh.
        return Ok(Claim::InFlight);
    };
    if hash != fingerprint {
        return Ok(Claim::Mismatch);
    }
    if let Some(status) = status {
        let headers = headers
            .map(serde_json::from_value)
            .transpose()
            .context("Stored idempotent headers are malformed")?
            .unwrap_or_default();
        return Ok(Claim::Completed(StoredResponse {
            status,
            headers,
            body: body.unwrap_or_default(),
        }));
    }
    let taken_over = sqlx::query(
        "UPDATE idempotency_keys SET created_at = now(), claim_token = $4
         WHERE user_id = $1 AND idempotency_key = $2 AND response_status IS NULL
           AND (claim_token IS NULL OR created_at < now() - make_interval(secs => $3))",
    )
    .bind(user_id)
    .bind(key)
    .bind(takeover_after_secs)
    .bind(token)
    .execute(pool)
    .await
    .context("Failed to take over an abandoned idempotency key")?;
    Ok(if taken_over.rows_affected() == 1 {
        Claim::Acquired(Held { resource_id, token })
    } else {
        Claim::InFlight
    })
}

/// Records the run's response, if the run still holds the key.
async fn remember(
    pool: &PgPool,
    user_id: &str,
    key: &str,
    token: Uuid,
    stored: &StoredResponse,
) -> anyhow::Result<()> {
    let headers = serde_json::to_value(&stored.headers).context("Failed to encode headers")?;
    let recorded = sqlx::query(
        "UPDATE idempotency_keys
         SET response_status = $4, response_headers = $5, response_body = $6, claim_token = NULL
         WHERE user_id = $1 AND idempotency_key = $2 AND claim_token = $3",
    )
    .bind(user_id)
    .bind(key)
    .bind(token)
    .bind(stored.status)
    .bind(headers)
    .bind(&stored.body)
    .execute(pool)
    .await
    .context("Failed to record the idempotent response")?;
    if recorded.rows_affected() == 0 {
        tracing::warn!(
            key,
            "a run superseded after the takeover finished; its response is not recorded"
        );
    }
    Ok(())
}

/// Gives the key back for a retry, keeping its resource id, if the run
/// still holds it.
async fn give_back(pool: &PgPool, user_id: &str, key: &str, token: Uuid) -> anyhow::Result<()> {
    let _ = sqlx::query(
        "UPDATE idempotency_keys SET claim_token = NULL
         WHERE user_id = $1 AND idempotency_key = $2 AND claim_token = $3",
    )
    .bind(user_id)
    .bind(key)
    .bind(token)
    .execute(pool)
    .await
    .context("Failed to give the idempotency key back")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ticketing_eventstore::ScratchDatabase;

    const USER: &str = "user";
    const KEY: &str = "key";
    const REQUEST: &[u8] = b"POST /api/orders";

    fn response(body: &str) -> StoredResponse {
        StoredResponse {
            status: 201,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    async fn database() -> ScratchDatabase {
        ScratchDatabase::create("idempotency_claims", 2)
            .await
            .expect("a scratch database")
    }

    /// Ages every claim past the takeover: its run seems to have died.
    async fn age_claims(pool: &PgPool) {
        let _ = sqlx::query("UPDATE idempotency_keys SET created_at = now() - interval '1 hour'")
            .execute(pool)
            .await
            .expect("age the claims");
    }

    #[tokio::test]
    async fn a_retry_after_a_server_error_keeps_the_resource_id() {
        let db = database().await;
        let pool = db.pool();
        let Claim::Acquired(first) = claim(pool, USER, KEY, REQUEST, ABANDONED_AFTER_SECS)
            .await
            .expect("claim")
        else {
            panic!("the first run must acquire the key");
        };
        give_back(pool, USER, KEY, first.token)
            .await
            .expect("give back");
        let Claim::Acquired(retry) = claim(pool, USER, KEY, REQUEST, ABANDONED_AFTER_SECS)
            .await
            .expect("claim")
        else {
            panic!("a retry after a server error must acquire the key");
        };
        assert_eq!(first.resource_id, retry.resource_id);
        db.remove().await.expect("remove the database");
    }

    #[tokio::test]
    async fn a_superseded_run_cannot_write_over_its_successor() {
        let db = database().await;
        let pool = db.pool();
        let Claim::Acquired(first) = claim(pool, USER, KEY, REQUEST, ABANDONED_AFTER_SECS)
            .await
            .expect("claim")
        else {
            panic!("the first run must acquire the key");
        };
        age_claims(pool).await;
        let Claim::Acquired(second) = claim(pool, USER, KEY, REQUEST, ABANDONED_AFTER_SECS)
            .await
            .expect("claim")
        else {
            panic!("a claim older than the takeover must be taken over");
        };
        assert_eq!(first.resource_id, second.resource_id);

        // The superseded run ends in a server error: the successor's claim
        // stands, so a third request waits for it.
        give_back(pool, USER, KEY, first.token)
            .await
            .expect("give back");
        assert!(matches!(
            claim(pool, USER, KEY, REQUEST, ABANDONED_AFTER_SECS)
                .await
                .expect("claim"),
            Claim::InFlight
        ));
        // The successor answers; the superseded run, finishing later, must
        // not replace that answer.
        remember(pool, USER, KEY, second.token, &response("second"))
            .await
            .expect("remember");
        remember(pool, USER, KEY, first.token, &response("first"))
            .await
            .expect("remember");
        let Claim::Completed(stored) = claim(pool, USER, KEY, REQUEST, ABANDONED_AFTER_SECS)
            .await
            .expect("claim")
        else {
            panic!("the answer must be stored");
        };
        assert_eq!(stored.body, b"second");
        db.remove().await.expect("remove the database");
    }
}
