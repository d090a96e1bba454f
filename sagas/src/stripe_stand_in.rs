//! A local stand-in for the Stripe endpoints this backend calls
//! (`POST /v1/charges`, `GET /v1/charges/search`), for tests: real Stripe
//! response shapes, Stripe's test-token behaviour, `Idempotency-Key`
//! honoured, and a ledger of every charge made. Faults: 5xx (transient, or
//! stored under the key and replayed as Stripe does), any error status
//! (429, 409, 401, ...), stalls before or after the charge is made.

use axum::extract::Query;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// The secret key the stand-in accepts.
pub const SECRET_KEY: &str = "sk_test_stand_in";

/// The parameters a key was first used with, and the answer given.
type Reply = (HashMap<String, String>, u16, Value);

#[derive(Default)]
struct Inner {
    /// Responses by idempotency key.
    replies: Mutex<HashMap<String, Reply>>,
    /// Charges made (not replayed), in order.
    charges: Mutex<Vec<Value>>,
    failing: AtomicBool,
    stall_ms: AtomicU64,
    stall_after_ms: AtomicU64,
    requests: AtomicU64,
    searches: AtomicU64,
    /// Keyed requests still to be answered with a stored 500; `true` if
    /// the charge is nevertheless made.
    stored_errors: Mutex<Vec<bool>>,
    /// Every charge request gets this error (status, type, code) until
    /// cleared; nothing is stored under the key.
    forced: Mutex<Option<(u16, String, Option<String>)>>,
}

/// A running stand-in; stops when dropped.
#[derive(Clone)]
pub struct StripeStandIn {
    pub address: SocketAddr,
    inner: Arc<Inner>,
    _shutdown: Arc<tokio::sync::oneshot::Sender<()>>,
}

impl StripeStandIn {
    /// Starts on an ephemeral port of 127.0.0.1.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let inner = Arc::new(Inner::default());
        let app = Router::new()
            .route("/v1/charges", post(create_charge))
            .route("/v1/charges/search", get(search_charges))
            .with_state(Arc::clone(&inner));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let _server = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Self {
            address,
            inner,
            _shutdown: Arc::new(tx),
        })
    }

    /// The base URL to configure as Stripe's.
    #[must_use]
    pub fn base_url(&self) -> String {
        format!("http://{}/", self.address)
    }

    /// Charges actually made (replays of an idempotency key excluded).
    #[must_use]
    pub fn charges(&self) -> Vec<Value> {
        self.inner
            .charges
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    /// The idempotency keys seen, in no particular order.
    #[must_use]
    pub fn idempotency_keys(&self) -> Vec<String> {
        self.inner
            .replies
            .lock()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Every request received, replays and failures included.
    #[must_use]
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::SeqCst)
    }

    /// The successful charges whose metadata names `order_id`.
    #[must_use]
    pub fn charges_for(&self, order_id: &str) -> Vec<Value> {
        self.charges()
            .into_iter()
            .filter(|c| c["metadata"]["order_id"] == order_id)
            .collect()
    }

    /// Charge searches received.
    #[must_use]
    pub fn searches(&self) -> u64 {
        self.inner.searches.load(Ordering::SeqCst)
    }

    /// The next keyed charge request gets a 500 that is stored under its key
    /// and replayed for every retry of that key (Stripe's behaviour once a
    /// request started executing). With `charged`, the charge is made all
    /// the same.
    pub fn fail_next_stored(&self, charged: bool) {
        if let Ok(mut stored) = self.inner.stored_errors.lock() {
            stored.push(charged);
        }
    }

    /// Until cleared with `None`, every charge request gets this error
    /// (e.g. 429 `rate_limit`, 409 `idempotency_key_in_use`, 401), made
    /// before any charge and not stored under the key.
    pub fn force_error(&self, error: Option<(u16, &str, Option<&str>)>) {
        if let Ok(mut forced) = self.inner.forced.lock() {
            *forced = error
                .map(|(status, kind, code)| (status, kind.to_owned(), code.map(str::to_owned)));
        }
    }

    /// Delays every answer after the charge is made (a charge that went
    /// through but whose answer is late).
    pub fn set_stall_after(&self, stall: Duration) {
        let millis = u64::try_from(stall.as_millis()).unwrap_or(u64::MAX);
        self.inner.stall_after_ms.store(millis, Ordering::SeqCst);
    }

    /// While `true`, every request gets Stripe's 500 `api_error`.
    pub fn set_failing(&self, failing: bool) {
        self.inner.failing.store(failing, Ordering::SeqCst);
    }

    /// Delays every answer (to trigger the client's timeout).
    pub fn set_stall(&self, stall: Duration) {
        let millis = u64::try_from(stall.as_millis()).unwrap_or(u64::MAX);
        self.inner.stall_ms.store(millis, Ordering::SeqCst);
    }
}

fn stripe_error(status: u16, kind: &str, code: Option<&str>, message: &str) -> (u16, Value) {
    let mut error = json!({ "type": kind, "message": message });
    if let Some(code) = code {
        error["code"] = json!(code);
        if kind == "card_error" {
            error["decline_code"] = json!("generic_decline");
        }
    }
    (status, json!({ "error": error }))
}

fn decide(params: &HashMap<String, String>, sequence: usize) -> (u16, Value) {
    let source = params.get("source").map(String::as_str).unwrap_or_default();
    let amount = params.get("amount").and_then(|a| a.parse::<i64>().ok());
    let Some(amount) = amount.filter(|a| *a > 0) else {
        return stripe_error(
            400,
            "invalid_request_error",
            Some("parameter_missing"),
            "Missing required param: amount.",
        );
    };
    match source {
        "tok_visa" | "tok_mastercard" | "tok_amex" => {
            let currency = params.get("currency").cloned().unwrap_or_default();
            let metadata: serde_json::Map<String, Value> = params
                .iter()
                .filter_map(|(k, v)| {
                    let name = k.strip_prefix("metadata[")?.strip_suffix(']')?;
                    Some((name.to_owned(), json!(v)))
                })
                .collect();
            (
                200,
                json!({
                    "id": format!("ch_standin_{sequence:08}"),
                    "object": "charge",
                    "amount": amount,
                    "amount_captured": amount,
                    "amount_refunded": 0,
                    "billing_details": { "address": null, "email": null, "name": null, "phone": null },
                    "captured": true,
                    "created": 1_700_000_000,
                    "currency": currency,
                    "disputed": false,
                    "livemode": false,
                    "metadata": metadata,
                    "paid": true,
                    "refunded": false,
                    "status": "succeeded"
                }),
            )
        }
        declined if declined.starts_with("tok_chargeDeclined") => stripe_error(
            402,
            "card_error",
            Some("card_declined"),
            "Your card was declined.",
        ),
        other => stripe_error(
            400,
            "invalid_request_error",
            Some("resource_missing"),
            &format!("No such token: '{other}'"),
        ),
    }
}

async fn create_charge(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Form(params): Form<HashMap<String, String>>,
) -> Response {
    let _ = inner.requests.fetch_add(1, Ordering::SeqCst);
    let stall = inner.stall_ms.load(Ordering::SeqCst);
    if stall > 0 {
        tokio::time::sleep(Duration::from_millis(stall)).await;
    }
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {SECRET_KEY}"));
    let forced = inner.forced.lock().ok().and_then(|f| f.clone());
    let (status, body) = if !authorized {
        unauthorized()
    } else if let Some((status, kind, code)) = forced {
        if status == 401 {
            unauthorized()
        } else {
            stripe_error(status, &kind, code.as_deref(), "Forced by the stand-in")
        }
    } else if inner.failing.load(Ordering::SeqCst) {
        stripe_error(500, "api_error", None, "An unknown error occurred")
    } else {
        let key = headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        reply(&inner, key, params)
    };
    let stall_after = inner.stall_after_ms.load(Ordering::SeqCst);
    if stall_after > 0 {
        tokio::time::sleep(Duration::from_millis(stall_after)).await;
    }
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(body)).into_response()
}

/// What Stripe answers a bad secret key; the key's tail is in the message.
fn unauthorized() -> (u16, Value) {
    stripe_error(
        401,
        "invalid_request_error",
        None,
        "Invalid API Key provided: sk_test_****_bad",
    )
}

/// `GET /v1/charges/search?query=metadata['k']:'v' AND ...`: the charges
/// made whose metadata match every clause (the subset of Stripe's search
/// language this backend uses).
async fn search_charges(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let _ = inner.searches.fetch_add(1, Ordering::SeqCst);
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {SECRET_KEY}"));
    if !authorized {
        let (status, body) = unauthorized();
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::UNAUTHORIZED);
        return (status, Json(body)).into_response();
    }
    let query = params.get("query").cloned().unwrap_or_default();
    let clauses: Option<Vec<(String, String)>> = query
        .split(" AND ")
        .map(|clause| {
            let rest = clause.trim().strip_prefix("metadata['")?;
            let (name, value) = rest.split_once("']:'")?;
            Some((name.to_owned(), value.strip_suffix('\'')?.to_owned()))
        })
        .collect();
    let Some(clauses) = clauses else {
        let (status, body) = stripe_error(
            400,
            "invalid_request_error",
            None,
            "The stand-in does not understand this query",
        );
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
        return (status, Json(body)).into_response();
    };
    let charges = inner.charges.lock().map(|c| c.clone()).unwrap_or_default();
    let data: Vec<Value> = charges
        .into_iter()
        .filter(|c| {
            clauses
                .iter()
                .all(|(name, value)| c["metadata"][name] == value.as_str())
        })
        .collect();
    Json(json!({
        "object": "search_result",
        "url": "/v1/charges/search",
        "has_more": false,
        "next_page": null,
        "data": data,
    }))
    .into_response()
}

/// Stripe's idempotency: the same key and parameters get the first answer
/// again (no new charge); the same key with other parameters is refused.
fn reply(inner: &Inner, key: Option<String>, params: HashMap<String, String>) -> (u16, Value) {
    let (Ok(mut replies), Ok(mut charges)) = (inner.replies.lock(), inner.charges.lock()) else {
        return stripe_error(500, "api_error", None, "stand-in state poisoned");
    };
    if let Some(key) = &key {
        if let Some((earlier, status, body)) = replies.get(key) {
            if *earlier == params {
                return (*status, body.clone());
            }
            return stripe_error(
                400,
                "idempotency_error",
                None,
                "Keys for idempotent requests can only be used with the same parameters they were first used with.",
            );
        }
    }
    let stored_error = match (&key, inner.stored_errors.lock()) {
        (Some(_), Ok(mut stored)) if !stored.is_empty() => Some(stored.remove(0)),
        _ => None,
    };
    let (mut status, mut body) = decide(&params, charges.len() + 1);
    if status == 200 && stored_error != Some(false) {
        charges.push(body.clone());
    }
    if stored_error.is_some() {
        (status, body) = stripe_error(500, "api_error", None, "An unknown error occurred");
    }
    if let Some(key) = key {
        let _ = replies.insert(key, (params, status, body.clone()));
    }
    (status, body)
}
