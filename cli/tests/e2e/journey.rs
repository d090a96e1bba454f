//! The ticket journey through the real `ticketing serve`: payments go to the
//! Stripe stand-in through the real async-stripe client; order expiry is the
//! saga timer of the same process.

use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use ticketing_sagas::stripe_stand_in::{StripeStandIn, SECRET_KEY};

use crate::helpers::{start_system_with, System};

async fn system_with_stripe(extra: &[(&str, &str)]) -> (System, StripeStandIn) {
    let stripe = StripeStandIn::start().await.unwrap();
    let base = stripe.base_url();
    let mut env = vec![
        ("PAYMENT_PROVIDER", "stripe"),
        ("STRIPE_SECRET_KEY", SECRET_KEY),
        ("STRIPE_API_BASE", base.as_str()),
    ];
    env.extend_from_slice(extra);
    (start_system_with(&env).await, stripe)
}

#[tokio::test]
async fn sign_up_create_order_pay_and_the_order_is_complete() {
    let (system, stripe) = system_with_stripe(&[]).await;
    let (seller, _) = system.signed_in_client().await;
    let (buyer, buyer_id) = system.signed_in_client().await;
    let (ticket, _) = system.create_ticket(&seller, "journey", 25.0).await;
    let ticket_id = ticket["id"].as_str().unwrap();
    let (order, _) = system.place_order(&buyer, ticket_id).await;
    let order_id = order["id"].as_str().unwrap();

    let (status, paid, token) = system
        .command(
            &buyer,
            Method::POST,
            "/api/payments",
            Some(json!({ "token": "tok_visa", "orderId": order_id })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{paid}");
    assert!(paid["id"].is_string());

    let orders: Value = system
        .get_after(&buyer, "/api/orders", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(orders.as_array().unwrap().len(), 1, "{orders}");
    assert_eq!(orders[0]["id"], order_id);
    assert_eq!(orders[0]["status"], "complete");
    assert_eq!(orders[0]["userId"], buyer_id);
    assert_eq!(orders[0]["ticket"]["id"], ticket_id);
    // The completed order keeps its ticket: not listed, not orderable.
    let listed: Value = Client::new()
        .get(system.url("/api/tickets"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!listed
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["id"] == ticket_id));
    let (other, _) = system.signed_in_client().await;
    let (status, _, _) = system
        .command(
            &other,
            Method::POST,
            "/api/orders",
            Some(json!({ "ticketId": ticket_id })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let charges = stripe.charges();
    assert_eq!(charges.len(), 1);
    assert_eq!(charges[0]["amount"], 2_500);
}

#[tokio::test]
async fn an_unpaid_order_expires_and_its_ticket_is_listed_again() {
    let (system, _stripe) = system_with_stripe(&[("ORDER_EXPIRATION_SECONDS", "2")]).await;
    let (seller, _) = system.signed_in_client().await;
    let (buyer, _) = system.signed_in_client().await;
    let (ticket, _) = system.create_ticket(&seller, "expiring", 10.0).await;
    let ticket_id = ticket["id"].as_str().unwrap().to_owned();
    let (order, token) = system.place_order(&buyer, &ticket_id).await;
    let order_id = order["id"].as_str().unwrap().to_owned();
    let listed = |token: Option<String>| {
        let system = &system;
        async move {
            let mut request = Client::new().get(system.url("/api/tickets"));
            if let Some(token) = token {
                request = request.header("x-consistency-token", token);
            }
            let tickets: Value = request.send().await.unwrap().json().await.unwrap();
            tickets.as_array().unwrap().clone()
        }
    };
    assert!(!listed(Some(token))
        .await
        .iter()
        .any(|t| t["id"] == ticket_id.as_str()));

    // The saga's timer cancels the order and releases the ticket.
    let started = Instant::now();
    loop {
        let order: Value = buyer
            .get(system.url(&format!("/api/orders/{order_id}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if order["status"] == "cancelled"
            && listed(None)
                .await
                .iter()
                .any(|t| t["id"] == ticket_id.as_str())
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not expired: {order}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Too late to pay.
    let (status, body, _) = system
        .command(
            &buyer,
            Method::POST,
            "/api/payments",
            Some(json!({ "token": "tok_visa", "orderId": order_id })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["errors"][0]["message"],
        "Cannot pay for an cancelled order"
    );
}
