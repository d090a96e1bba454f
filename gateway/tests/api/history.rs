//! History (`GET /api/tickets/:id/history`, `GET /api/orders/:id/history`)
//! and time travel (`?asOf=`), read from the event store.

use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_errors, body, new_client, spawn_app, TestApp};

/// Sends a request with `X-Correlation-Id: correlation`.
async fn send(
    app: &TestApp,
    client: &Client,
    method: Method,
    path: &str,
    body: Option<Value>,
    correlation: &str,
) -> Response {
    let mut request = client
        .request(method, app.url(path))
        .header("x-correlation-id", correlation);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

/// GET `path` with `asOf=at`.
async fn get_as_of(app: &TestApp, client: &Client, path: &str, at: &str) -> Response {
    client
        .get(app.url(path))
        .query(&[("asOf", at)])
        .send()
        .await
        .unwrap()
}

async fn history(app: &TestApp, client: &Client, path: &str) -> Vec<Value> {
    let response = app.get(client, path).await;
    assert_eq!(response.status(), StatusCode::OK);
    body(response).await.as_array().unwrap().clone()
}

fn strings(events: &[Value], key: &str) -> Vec<Value> {
    events.iter().map(|e| e[key].clone()).collect()
}

/// A ticket created and updated by its seller, then reserved by a buyer's
/// order, released (the buyer cancelled) and reserved again by a second
/// order of the buyer.
struct TicketStory {
    seller: Client,
    seller_id: String,
    buyer: Client,
    buyer_id: String,
    ticket_id: String,
    order_ids: [String; 2],
    /// The ticket as its seller's commands answered it: created, updated.
    answered: [Value; 2],
}

async fn ticket_story(app: &TestApp) -> TicketStory {
    let (seller, seller_id) = app.signed_in_client().await;
    let (buyer, buyer_id) = app.signed_in_client().await;
    let created = send(
        app,
        &seller,
        Method::POST,
        "/api/tickets",
        Some(json!({ "title": "concert", "price": 10 })),
        "seller-create",
    )
    .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created = body(created).await;
    let ticket_id = created["id"].as_str().unwrap().to_owned();
    let updated = send(
        app,
        &seller,
        Method::PUT,
        &format!("/api/tickets/{ticket_id}"),
        Some(json!({ "title": "concert, front row", "price": 12.5 })),
        "seller-update",
    )
    .await;
    assert_eq!(updated.status(), StatusCode::OK);
    let updated = body(updated).await;
    let mut order_ids = Vec::new();
    for (n, correlation) in ["buyer-order-1", "buyer-order-2"].into_iter().enumerate() {
        let order = send(
            app,
            &buyer,
            Method::POST,
            "/api/orders",
            Some(json!({ "ticketId": ticket_id })),
            correlation,
        )
        .await;
        assert_eq!(order.status(), StatusCode::CREATED);
        order_ids.push(body(order).await["id"].as_str().unwrap().to_owned());
        if n == 0 {
            let cancelled = send(
                app,
                &buyer,
                Method::DELETE,
                &format!("/api/orders/{}", order_ids[0]),
                None,
                "buyer-cancel",
            )
            .await;
            assert_eq!(cancelled.status(), StatusCode::NO_CONTENT);
        }
    }
    let [first, second]: [String; 2] = order_ids.try_into().unwrap();
    TicketStory {
        seller,
        seller_id,
        buyer,
        buyer_id,
        ticket_id,
        order_ids: [first, second],
        answered: [created, updated],
    }
}

#[tokio::test]
async fn given_a_ticket_reserved_released_and_reserved_again_when_its_seller_reads_its_history_then_every_event_is_listed_in_order_without_the_buyers_details(
) {
    let app = spawn_app().await;
    let story = ticket_story(&app).await;

    let response = app
        .get(
            &story.seller,
            &format!("/api/tickets/{}/history", story.ticket_id),
        )
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["cache-control"],
        "private, no-cache",
        "a ticket's history is its owner's alone"
    );
    let text = response.text().await.unwrap();
    let events: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(
        strings(&events, "eventType"),
        [
            "TicketCreated",
            "TicketUpdated",
            "TicketReserved",
            "TicketReleased",
            "TicketReserved"
        ]
    );
    assert_eq!(strings(&events, "sequence"), [1, 2, 3, 4, 5]);
    assert_eq!(
        strings(&events, "schemaVersion"),
        ["1.1.0", "1.0.0", "1.0.0", "1.0.0", "1.0.0"]
    );
    // The seller's own requests keep their ids; the buyer's are withheld.
    assert_eq!(
        strings(&events, "correlationId"),
        [
            json!("seller-create"),
            json!("seller-update"),
            Value::Null,
            Value::Null,
            Value::Null
        ]
    );
    assert_eq!(
        strings(&events, "redacted"),
        [
            Value::Null,
            Value::Null,
            json!(true),
            json!(true),
            json!(true)
        ]
    );
    assert_eq!(
        events[0]["data"],
        json!({ "title": "concert", "priceCents": 1000, "userId": story.seller_id, "currency": "usd" })
    );
    assert_eq!(
        events[1]["data"],
        json!({ "title": "concert, front row", "priceCents": 1250 })
    );
    assert!(events[2]["data"]["expiresAt"].is_string(), "{}", events[2]);
    assert_eq!(events[3]["data"], json!({}));
    for secret in [
        story.buyer_id.as_str(),
        story.order_ids[0].as_str(),
        story.order_ids[1].as_str(),
        "buyer-",
    ] {
        assert!(
            !text.contains(secret),
            "the seller's history shows {secret}: {text}"
        );
    }
    let timestamps: Vec<&str> = events
        .iter()
        .map(|e| e["timestamp"].as_str().unwrap())
        .collect();
    assert!(timestamps.is_sorted(), "{timestamps:?}");
}

#[tokio::test]
async fn given_a_ticket_history_when_it_is_paged_then_the_link_header_leads_through_every_event_once(
) {
    let app = spawn_app().await;
    let story = ticket_story(&app).await;
    let path = format!("/api/tickets/{}/history", story.ticket_id);
    let all = history(&app, &story.seller, &path).await;

    let mut paged = Vec::new();
    let mut next = Some(format!("{path}?limit=2"));
    while let Some(page) = next.take() {
        let response = app.get(&story.seller, &page).await;
        assert_eq!(response.status(), StatusCode::OK);
        next = response.headers().get("link").map(|link| {
            let link = link.to_str().unwrap();
            link[link.find('<').unwrap() + 1..link.find('>').unwrap()].to_owned()
        });
        let items = body(response).await;
        paged.extend(items.as_array().unwrap().iter().cloned());
        assert!(paged.len() <= all.len(), "pages past the end: {paged:?}");
    }

    assert_eq!(paged, all);
    assert_errors(
        app.get(&story.seller, &format!("{path}?after=not-a-position"))
            .await,
        StatusCode::BAD_REQUEST,
        &[("after must be the globalPosition of an event", None)],
    )
    .await;
}

#[tokio::test]
async fn given_a_ticket_when_anyone_but_its_seller_asks_for_its_history_then_401_and_an_unknown_ticket_is_404(
) {
    let app = spawn_app().await;
    let story = ticket_story(&app).await;
    let path = format!("/api/tickets/{}/history", story.ticket_id);

    for client in [&story.buyer, &new_client()] {
        assert_errors(
            app.get(client, &path).await,
            StatusCode::UNAUTHORIZED,
            &[("Not authorized", None)],
        )
        .await;
    }
    for unknown in [
        "/api/tickets/0198c0de-0000-7000-8000-000000000000/history",
        "/api/tickets/not-an-id/history",
    ] {
        assert_errors(
            app.get(&story.seller, unknown).await,
            StatusCode::NOT_FOUND,
            &[("Not Found", None)],
        )
        .await;
    }
}

#[tokio::test]
async fn given_a_ticket_history_when_asof_each_events_timestamp_then_the_ticket_is_as_it_was_after_that_event(
) {
    let app = spawn_app().await;
    let story = ticket_story(&app).await;
    let events = history(
        &app,
        &story.seller,
        &format!("/api/tickets/{}/history", story.ticket_id),
    )
    .await;
    let path = format!("/api/tickets/{}", story.ticket_id);
    let reserved = |version: u64, order: &str| {
        let mut ticket = story.answered[1].clone();
        ticket["version"] = json!(version);
        ticket["orderId"] = json!(order);
        ticket
    };
    let mut released = story.answered[1].clone();
    released["version"] = json!(3);
    let expected = [
        story.answered[0].clone(),
        story.answered[1].clone(),
        reserved(2, &story.order_ids[0]),
        released,
        reserved(4, &story.order_ids[1]),
    ];

    for (event, expected) in events.iter().zip(&expected) {
        let at = event["timestamp"].as_str().unwrap();
        // Public, as the normal GET: no session needed.
        let response = get_as_of(&app, &new_client(), &path, at).await;
        assert_eq!(response.status(), StatusCode::OK, "asOf {at}");
        assert_eq!(&body(response).await, expected, "asOf {at}");
    }
    assert_eq!(events.len(), expected.len());

    assert_errors(
        get_as_of(&app, &story.seller, &path, "2000-01-01T00:00:00Z").await,
        StatusCode::NOT_FOUND,
        &[("Not Found", None)],
    )
    .await;
    assert_errors(
        get_as_of(&app, &story.seller, &path, "yesterday").await,
        StatusCode::BAD_REQUEST,
        &[(
            "asOf must be an RFC 3339 time, e.g. 2025-01-31T12:00:00Z",
            None,
        )],
    )
    .await;
}

/// An order placed, paid with a declined card, then paid again and
/// completed; returns the buyer, the seller, the order as placed, and the
/// correlation ids used.
async fn paid_order_story(app: &TestApp) -> (Client, Client, Value) {
    let (seller, _) = app.signed_in_client().await;
    let (buyer, _) = app.signed_in_client().await;
    let ticket = app.create_ticket(&seller, "concert", json!(19.99)).await;
    let placed = send(
        app,
        &buyer,
        Method::POST,
        "/api/orders",
        Some(json!({ "ticketId": ticket["id"] })),
        "place",
    )
    .await;
    assert_eq!(placed.status(), StatusCode::CREATED);
    let placed = body(placed).await;
    for (token, correlation, status) in [
        (
            "tok_chargeDeclined",
            "pay-declined",
            StatusCode::BAD_REQUEST,
        ),
        ("tok_visa", "pay-again", StatusCode::CREATED),
    ] {
        let paid = send(
            app,
            &buyer,
            Method::POST,
            "/api/payments",
            Some(json!({ "token": token, "orderId": placed["id"] })),
            correlation,
        )
        .await;
        assert_eq!(paid.status(), status);
    }
    (buyer, seller, placed)
}

#[tokio::test]
async fn given_an_order_declined_then_paid_when_its_buyer_reads_its_history_then_the_order_and_payment_events_are_listed_in_order(
) {
    let app = spawn_app().await;
    let (buyer, _, placed) = paid_order_story(&app).await;
    let order_id = placed["id"].as_str().unwrap();

    let events = history(&app, &buyer, &format!("/api/orders/{order_id}/history")).await;

    let listed: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["aggregateType"].as_str().unwrap(),
                e["eventType"].as_str().unwrap(),
                e["correlationId"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("Order", "OrderPlaced", "place"),
            ("Order", "OrderPaymentStarted", "pay-declined"),
            ("Payment", "PaymentRequested", "pay-declined"),
            ("Payment", "PaymentFailed", "pay-declined"),
            ("Order", "OrderPaymentFailed", "pay-declined"),
            ("Order", "OrderPaymentStarted", "pay-again"),
            ("Payment", "PaymentRequested", "pay-again"),
            ("Payment", "PaymentSucceeded", "pay-again"),
            ("Order", "OrderCompleted", "pay-again"),
        ]
    );
    let order_sequences: Vec<&Value> = events
        .iter()
        .filter(|e| e["aggregateType"] == "Order")
        .map(|e| &e["sequence"])
        .collect();
    assert_eq!(order_sequences, [1, 2, 3, 4, 5]);
    // Each payment is linked both ways: the order names it, it names the order.
    let first_payment = &events[1]["data"]["paymentId"];
    assert_eq!(&events[2]["aggregateId"], first_payment);
    assert_eq!(events[2]["data"]["orderId"], order_id);
    assert_eq!(events[2]["data"]["amountCents"], 1_999);
    assert_eq!(&events[4]["data"]["paymentId"], first_payment);
    assert_eq!(events[5]["data"]["attempt"], 2);
    assert!(events.iter().all(|e| e.get("redacted").is_none()));
    let positions: Vec<u64> = events
        .iter()
        .map(|e| e["globalPosition"].as_u64().unwrap())
        .collect();
    assert!(positions.is_sorted(), "{positions:?}");
}

#[tokio::test]
async fn given_an_order_when_anyone_but_its_buyer_asks_for_its_history_or_past_state_then_401() {
    let app = spawn_app().await;
    let (buyer, seller, placed) = paid_order_story(&app).await;
    let order_id = placed["id"].as_str().unwrap();
    let events = history(&app, &buyer, &format!("/api/orders/{order_id}/history")).await;
    let at = events[0]["timestamp"].as_str().unwrap();

    for client in [&seller, &new_client()] {
        assert_errors(
            app.get(client, &format!("/api/orders/{order_id}/history"))
                .await,
            StatusCode::UNAUTHORIZED,
            &[("Not authorized", None)],
        )
        .await;
        assert_errors(
            get_as_of(&app, client, &format!("/api/orders/{order_id}"), at).await,
            StatusCode::UNAUTHORIZED,
            &[("Not authorized", None)],
        )
        .await;
    }
    assert_errors(
        app.get(
            &buyer,
            "/api/orders/0198c0de-0000-7000-8000-000000000000/history",
        )
        .await,
        StatusCode::NOT_FOUND,
        &[("Not Found", None)],
    )
    .await;
}

#[tokio::test]
async fn given_an_order_history_when_asof_each_order_events_timestamp_then_the_order_is_as_it_was_after_that_event(
) {
    let app = spawn_app().await;
    let (buyer, _, placed) = paid_order_story(&app).await;
    let order_id = placed["id"].as_str().unwrap();
    let path = format!("/api/orders/{order_id}");
    let events = history(&app, &buyer, &format!("{path}/history")).await;
    let order_events: Vec<&Value> = events
        .iter()
        .filter(|e| e["aggregateType"] == "Order")
        .collect();
    let statuses = [
        "created",
        "awaiting:payment",
        "created",
        "awaiting:payment",
        "complete",
    ];

    for (version, (event, status)) in order_events.iter().zip(statuses).enumerate() {
        let at = event["timestamp"].as_str().unwrap();
        let response = get_as_of(&app, &buyer, &path, at).await;
        assert_eq!(response.status(), StatusCode::OK, "asOf {at}");
        let mut expected = placed.clone();
        expected["status"] = json!(status);
        expected["version"] = json!(version);
        assert_eq!(body(response).await, expected, "asOf {at}");
    }
    assert_eq!(order_events.len(), statuses.len());

    assert_errors(
        get_as_of(&app, &buyer, &path, "2000-01-01T00:00:00Z").await,
        StatusCode::NOT_FOUND,
        &[("Not Found", None)],
    )
    .await;
    assert_errors(
        get_as_of(&app, &buyer, &path, "2025-13-45T99:00:00Z").await,
        StatusCode::BAD_REQUEST,
        &[(
            "asOf must be an RFC 3339 time, e.g. 2025-01-31T12:00:00Z",
            None,
        )],
    )
    .await;
}
