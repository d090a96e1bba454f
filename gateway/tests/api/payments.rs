//! POST /api/payments, through the real async-stripe client and the local
//! Stripe stand-in.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_errors, body, new_client, spawn_app, TestApp};

/// A buyer with an open order on a $19.99 ticket.
async fn open_order(app: &TestApp) -> (reqwest::Client, String) {
    let (seller, _) = app.signed_in_client().await;
    let (buyer, _) = app.signed_in_client().await;
    let ticket = app.create_ticket(&seller, "concert", json!(19.99)).await;
    let order = body(app.order(&buyer, ticket["id"].as_str().unwrap()).await).await;
    (buyer, order["id"].as_str().unwrap().to_owned())
}

async fn pay(
    app: &TestApp,
    client: &reqwest::Client,
    order_id: &str,
    token: &str,
) -> reqwest::Response {
    app.post(
        client,
        "/api/payments",
        json!({ "token": token, "orderId": order_id }),
    )
    .await
}

#[tokio::test]
async fn paying_charges_the_price_in_cents_and_answers_the_payment_id() {
    let app = spawn_app().await;
    let (buyer, order_id) = open_order(&app).await;

    let response = pay(&app, &buyer, &order_id, "tok_visa").await;

    assert_eq!(response.status(), StatusCode::CREATED);
    let paid: Value = body(response).await;
    assert!(
        paid["id"].as_str().is_some_and(|id| !id.is_empty()),
        "{paid}"
    );
    let charges = app.stripe.charges();
    assert_eq!(charges.len(), 1);
    assert_eq!(charges[0]["amount"], 1_999);
    assert_eq!(charges[0]["currency"], "usd");
    // Paid: it can no longer be cancelled, nor paid again, and no second
    // charge is made.
    assert_errors(
        pay(&app, &buyer, &order_id, "tok_visa").await,
        StatusCode::BAD_REQUEST,
        &[("Order has already been paid", None)],
    )
    .await;
    assert_errors(
        app.delete(&buyer, &format!("/api/orders/{order_id}")).await,
        StatusCode::BAD_REQUEST,
        &[("Cannot cancel a completed order", None)],
    )
    .await;
    assert_eq!(app.stripe.charges().len(), 1);
}

#[tokio::test]
async fn a_declined_card_is_a_400_and_the_order_stays_payable() {
    let app = spawn_app().await;
    let (buyer, order_id) = open_order(&app).await;

    assert_errors(
        pay(&app, &buyer, &order_id, "tok_chargeDeclined").await,
        StatusCode::BAD_REQUEST,
        &[("Your card was declined.", None)],
    )
    .await;
    assert_errors(
        pay(&app, &buyer, &order_id, "asldkfj").await,
        StatusCode::BAD_REQUEST,
        &[("The payment token is not valid", None)],
    )
    .await;
    assert_eq!(
        pay(&app, &buyer, &order_id, "tok_visa").await.status(),
        StatusCode::CREATED
    );
    assert_eq!(app.stripe.charges().len(), 1);
}

#[tokio::test]
async fn the_contract_s_refusals() {
    let app = spawn_app().await;
    let (buyer, order_id) = open_order(&app).await;

    // Signed out: 401 before any validation.
    assert_errors(
        pay(&app, &new_client(), &order_id, "tok_visa").await,
        StatusCode::UNAUTHORIZED,
        &[("Not authorized", None)],
    )
    .await;
    // Both fields required, one entry each.
    assert_errors(
        app.post(&buyer, "/api/payments", json!({})).await,
        StatusCode::BAD_REQUEST,
        &[
            ("Token must be provided", Some("token")),
            ("OrderId must be provided", Some("orderId")),
        ],
    )
    .await;
    assert_errors(
        app.post(
            &buyer,
            "/api/payments",
            json!({ "token": "", "orderId": order_id }),
        )
        .await,
        StatusCode::BAD_REQUEST,
        &[("Token must be provided", Some("token"))],
    )
    .await;
    // Unknown and malformed orders.
    for missing in ["5e0cdb2e-5d4f-4d0e-9d8e-0b7f1f0f0c11", "not-an-id"] {
        assert_errors(
            pay(&app, &buyer, missing, "tok_visa").await,
            StatusCode::NOT_FOUND,
            &[("Not Found", None)],
        )
        .await;
    }
    // Someone else's order.
    let (stranger, _) = app.signed_in_client().await;
    assert_errors(
        pay(&app, &stranger, &order_id, "tok_visa").await,
        StatusCode::UNAUTHORIZED,
        &[("Not authorized", None)],
    )
    .await;
    // A cancelled order.
    assert_eq!(
        app.delete(&buyer, &format!("/api/orders/{order_id}"))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_errors(
        pay(&app, &buyer, &order_id, "tok_visa").await,
        StatusCode::BAD_REQUEST,
        &[("Cannot pay for an cancelled order", None)],
    )
    .await;
    assert_eq!(app.stripe.requests(), 0, "no refusal reached Stripe");
}

#[tokio::test]
async fn stripe_down_opens_the_circuit_and_answers_503_fast() {
    let app = spawn_app().await;
    app.stripe.set_failing(true);
    let mut orders = Vec::new();
    for _ in 0..3 {
        orders.push(open_order(&app).await);
    }

    for (buyer, order_id) in &orders[..2] {
        let response = pay(&app, buyer, order_id, "tok_visa").await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key("retry-after"));
    }
    // The breaker (threshold 2 here) is open: no call reaches Stripe.
    let (buyer, order_id) = &orders[2];
    assert_errors(
        pay(&app, buyer, order_id, "tok_visa").await,
        StatusCode::SERVICE_UNAVAILABLE,
        &[(
            "The payment provider is unavailable; no charge was made, retry shortly",
            None,
        )],
    )
    .await;
    assert_eq!(app.stripe.requests(), 2);
    assert!(app.stripe.charges().is_empty());
}

#[tokio::test]
async fn a_card_number_sent_as_the_token_is_never_echoed() {
    let app = spawn_app().await;
    let (buyer, order_id) = open_order(&app).await;
    let card = "4242424242424242";

    let response = pay(&app, &buyer, &order_id, card).await;

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let text = response.text().await.expect("a body");
    assert!(!text.contains(card), "{text}");
    assert_eq!(app.stripe.requests(), 0, "never sent to Stripe");
    // Still payable.
    assert_eq!(
        pay(&app, &buyer, &order_id, "tok_visa").await.status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn a_bad_stripe_key_is_a_503_that_opens_the_breaker_and_is_never_shown() {
    let app = spawn_app().await;
    app.stripe
        .force_error(Some((401, "invalid_request_error", None)));
    let mut orders = Vec::new();
    for _ in 0..3 {
        orders.push(open_order(&app).await);
    }

    for (buyer, order_id) in &orders {
        let response = pay(&app, buyer, order_id, "tok_visa").await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let text = response.text().await.expect("a body");
        assert!(!text.contains("sk_") && !text.contains("API Key"), "{text}");
    }
    // The breaker (threshold 2 here) opened on the provider's error.
    assert_eq!(app.stripe.requests(), 2);
}

#[tokio::test]
async fn declined_cards_are_not_tried_against_one_order_without_limit() {
    let app = spawn_app().await;
    let (buyer, order_id) = open_order(&app).await;
    for _ in 0..ticketing_sagas::DEFAULT_MAX_PAYMENT_ATTEMPTS {
        assert_errors(
            pay(&app, &buyer, &order_id, "tok_chargeDeclined").await,
            StatusCode::BAD_REQUEST,
            &[("Your card was declined.", None)],
        )
        .await;
    }
    let attempts = app.stripe.charges().len();

    let refused = pay(&app, &buyer, &order_id, "tok_visa").await;

    assert_errors(
        refused,
        StatusCode::BAD_REQUEST,
        &[("Too many failed payment attempts for this order", None)],
    )
    .await;
    assert_eq!(
        app.stripe.charges().len(),
        attempts,
        "nothing more was sent"
    );
}
