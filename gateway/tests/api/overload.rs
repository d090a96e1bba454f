//! An event store that cannot be reached: writes are shed with 503 and
//! `Retry-After` within the commit wait, not after minutes.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use ticketing_eventstore::GroupCommit;

use crate::helpers::{assert_errors, spawn_app_through_proxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_gets_503_with_retry_after_when_the_database_is_unreachable() {
    let (app, proxy) = spawn_app_through_proxy().await;
    let (client, _) = app.signed_in_client().await;
    proxy.refuse(true);

    let started = Instant::now();
    let response = app
        .post(
            &client,
            "/api/tickets",
            json!({ "title": "concert", "price": 10 }),
        )
        .await;
    let elapsed = started.elapsed();

    assert_eq!(
        response.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    assert_errors(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        &[("The service is busy; retry shortly", None)],
    )
    .await;
    let bound = GroupCommit::default().wait + Duration::from_secs(3);
    assert!(elapsed < bound, "answered after {elapsed:?}");
}
