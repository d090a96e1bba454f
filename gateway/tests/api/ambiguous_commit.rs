//! A COMMIT whose reply is lost: the connection breaks after the server
//! committed. The gateway must not compensate for what did happen.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_errors, body, spawn_app_through_proxy, TestApp};

/// `(event_type, payload)` of the aggregate's events, in order.
async fn events(app: &TestApp, id: &str) -> Vec<(String, Value)> {
    sqlx::query_as(
        "SELECT event_type, payload::jsonb FROM events WHERE aggregate_id = $1 ORDER BY sequence",
    )
    .bind(id)
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_whose_commit_reply_is_lost_keeps_its_ticket() {
    let (app, proxy) = spawn_app_through_proxy().await;
    let (seller, _) = app.signed_in_client().await;
    let (buyer, buyer_id) = app.signed_in_client().await;
    let ticket = app.create_ticket(&seller, "concert", json!(10)).await;
    let ticket_id = ticket["id"].as_str().unwrap();

    // The reservation and the order slot commit as usual; the order's
    // COMMIT reply is lost.
    proxy.lose_commit_reply(2);
    let response = app.order(&buyer, ticket_id).await;

    assert_eq!(proxy.lost_replies(), 1, "the fault was not injected");
    assert_eq!(response.status(), StatusCode::CREATED);
    let order = body(response).await;
    assert_eq!(order["userId"], buyer_id);
    let order_id = order["id"].as_str().unwrap();
    assert_eq!(events(&app, order_id).await.len(), 1, "the order is stored");
    // The ticket stays with the order that was placed: never released.
    let ticket_events = events(&app, ticket_id).await;
    let types: Vec<&str> = ticket_events.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(types, ["TicketCreated", "TicketReserved"]);
    assert_eq!(
        ticket_events[1].1["TicketReserved"]["order_id"],
        order["id"]
    );
    let (other, _) = app.signed_in_client().await;
    assert_errors(
        app.order(&other, ticket_id).await,
        StatusCode::BAD_REQUEST,
        &[("Ticket is already reserved", None)],
    )
    .await;
}
