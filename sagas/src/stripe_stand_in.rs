//! A local stand-in for the Stripe endpoint this backend calls
//! (`POST /v1/charges`), for tests: real Stripe response shapes, Stripe's
//! test-token behaviour, `Idempotency-Key` honoured, and every charge
//! recorded. It can be made to fail (5xx) or to stall, to exercise the
//! timeout and the circuit breaker.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
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
    requests: AtomicU64,
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
            let order_id = params
                .get("metadata[order_id]")
                .cloned()
                .unwrap_or_default();
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
                    "metadata": { "order_id": order_id },
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
    let (status, body) = if !authorized {
        stripe_error(
            401,
            "invalid_request_error",
            None,
            "Invalid API Key provided",
        )
    } else if inner.failing.load(Ordering::SeqCst) {
        stripe_error(500, "api_error", None, "An unknown error occurred")
    } else {
        let key = headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        reply(&inner, key, params)
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(body)).into_response()
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
    let (status, body) = decide(&params, charges.len() + 1);
    if status == 200 {
        charges.push(body.clone());
    }
    if let Some(key) = key {
        let _ = replies.insert(key, (params, status, body.clone()));
    }
    (status, body)
}
