//! Write shedding: while the read side reports more events behind than the
//! bound, new writes are refused with 503 and Retry-After in the contract's
//! shape; reads, and the writes that finish what a buyer started, go on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_errors, body, spawn_app_built};

const BOUND: u64 = 1_000;
const SHED: &str = "The service is catching up with recent changes; retry shortly";

#[tokio::test]
async fn new_writes_are_shed_while_the_read_side_is_too_far_behind() {
    let behind = Arc::new(AtomicU64::new(0));
    let gauge = Arc::clone(&behind);
    let app = spawn_app_built(
        |_| {},
        |app| app.with_write_shedding(BOUND, Arc::new(move || gauge.load(Ordering::Relaxed))),
    )
    .await;
    let (seller, _) = app.signed_in_client().await;
    let (buyer, _) = app.signed_in_client().await;
    let ticket = app.create_ticket(&seller, "Concert", json!(20)).await;
    let ticket_id = ticket["id"].as_str().unwrap().to_owned();
    let other = app.create_ticket(&seller, "Opera", json!(30)).await;
    let order = body(app.order(&buyer, &ticket_id).await).await;
    let order_id = order["id"].as_str().unwrap().to_owned();

    let create_ballet = || {
        app.post(
            &seller,
            "/api/tickets",
            json!({ "title": "Ballet", "price": 5 }),
        )
    };

    behind.store(BOUND, Ordering::Relaxed);
    let at_bound = app.order(&buyer, other["id"].as_str().unwrap()).await;
    assert_eq!(
        at_bound.status(),
        StatusCode::CREATED,
        "at the bound: served"
    );

    behind.store(BOUND + 1, Ordering::Relaxed);
    let created = create_ballet().await;
    assert_eq!(
        created
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    assert_errors(created, StatusCode::SERVICE_UNAVAILABLE, &[(SHED, None)]).await;
    let updated = app
        .put(
            &seller,
            &format!("/api/tickets/{ticket_id}"),
            json!({ "title": "Concert, late", "price": 25 }),
        )
        .await;
    assert_errors(updated, StatusCode::SERVICE_UNAVAILABLE, &[(SHED, None)]).await;
    let placed = app.order(&buyer, &ticket_id).await;
    assert_eq!(placed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(app.event_count(&ticket_id).await, 2, "nothing written");
    // Reads and cancelling go on.
    let listed = app.get(&buyer, "/api/tickets").await;
    assert_eq!(listed.status(), StatusCode::OK);
    let cancelled = app.delete(&buyer, &format!("/api/orders/{order_id}")).await;
    assert!(cancelled.status().is_success(), "{}", cancelled.status());

    behind.store(0, Ordering::Relaxed);
    let created = create_ballet().await;
    assert_eq!(created.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_bound_of_zero_never_sheds() {
    let app = spawn_app_built(
        |_| {},
        |app| app.with_write_shedding(0, Arc::new(|| u64::MAX)),
    )
    .await;
    let (seller, _) = app.signed_in_client().await;
    let _ = app.create_ticket(&seller, "Concert", json!(20)).await;
}
