//! Abuse bounds through the real server: a user's live orders are capped,
//! and an order that ends gives its place back.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::start_system_with;

#[tokio::test]
async fn a_user_holds_at_most_the_cap_of_live_orders_and_cancelling_frees_one() {
    let system = start_system_with(&[("MAX_LIVE_ORDERS_PER_USER", "1")]).await;
    let (seller, _) = system.signed_in_client().await;
    let (buyer, _) = system.signed_in_client().await;
    let (first, _) = system.create_ticket(&seller, "seat 1", 10.0).await;
    let (second, _) = system.create_ticket(&seller, "seat 2", 10.0).await;
    let (order, _) = system
        .place_order(&buyer, first["id"].as_str().unwrap())
        .await;
    let order_id = order["id"].as_str().unwrap();

    let (refused, body, _) = system
        .command(
            &buyer,
            Method::POST,
            "/api/orders",
            Some(json!({ "ticketId": second["id"] })),
        )
        .await;
    assert_eq!(refused, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["errors"][0]["message"],
        "You have too many open orders; pay for or cancel one first"
    );

    let (cancelled, _, token) = system
        .command(
            &buyer,
            Method::DELETE,
            &format!("/api/orders/{order_id}"),
            None,
        )
        .await;
    assert_eq!(cancelled, StatusCode::NO_CONTENT);
    // Once the read model shows it cancelled, the slot is free again.
    let shown = system
        .get_after(&buyer, &format!("/api/orders/{order_id}"), &token)
        .await;
    assert_eq!(shown.status(), StatusCode::OK);
    let _ = system
        .place_order(&buyer, second["id"].as_str().unwrap())
        .await;
}
