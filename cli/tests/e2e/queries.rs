//! The contract's query rows, answered from the read models.

use std::time::Duration;

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use ticketing_testkit::eventually;

use crate::helpers::{samples, start_system, start_system_with};

async fn error_body(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    (
        status,
        response.json::<Value>().await.unwrap()["errors"].clone(),
    )
}

#[tokio::test]
async fn tickets_are_listed_and_shown_and_reserved_ones_are_hidden() {
    let system = start_system().await;
    let (seller, seller_id) = system.signed_in_client().await;
    let (buyer, _) = system.signed_in_client().await;
    let (first, _) = system.create_ticket(&seller, "first", 10.0).await;
    let (second, token) = system.create_ticket(&seller, "second", 19.99).await;

    let listed: Value = system
        .get_after(&Client::new(), "/api/tickets", &token)
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&first["id"].as_str().unwrap())
            && ids.contains(&second["id"].as_str().unwrap())
    );
    let shown = system
        .get_after(
            &Client::new(),
            &format!("/api/tickets/{}", second["id"].as_str().unwrap()),
            &token,
        )
        .await;
    assert_eq!(shown.status(), StatusCode::OK);
    assert_eq!(
        shown.json::<Value>().await.unwrap(),
        json!({ "id": second["id"], "title": "second", "price": 19.99, "userId": seller_id, "version": 0 })
    );

    let (order, token) = system
        .place_order(&buyer, second["id"].as_str().unwrap())
        .await;
    let listed: Value = system
        .get_after(&Client::new(), "/api/tickets", &token)
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![first["id"].as_str().unwrap()],
        "the reserved ticket is hidden"
    );
    let reserved: Value = system
        .get_after(
            &Client::new(),
            &format!("/api/tickets/{}", second["id"].as_str().unwrap()),
            &token,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(reserved["orderId"], order["id"]);
    assert_eq!(reserved["version"], 1);

    let (status, _, token) = system
        .command(
            &buyer,
            Method::DELETE,
            &format!("/api/orders/{}", order["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let listed: Value = system
        .get_after(&Client::new(), "/api/tickets", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed.as_array().unwrap().len(),
        2,
        "released, listed again: {listed}"
    );
}

#[tokio::test]
async fn unknown_and_malformed_ticket_ids_are_404() {
    let system = start_system().await;
    for id in [uuid::Uuid::new_v4().to_string(), "nope".to_owned()] {
        let (status, errors) = error_body(
            Client::new()
                .get(system.url(&format!("/api/tickets/{id}")))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(errors, json!([{ "message": "Not Found" }]));
    }
}

#[tokio::test]
async fn a_user_lists_only_their_orders_oldest_first_with_their_tickets() {
    let system = start_system().await;
    let (seller, _) = system.signed_in_client().await;
    let (buyer, buyer_id) = system.signed_in_client().await;
    let (other, _) = system.signed_in_client().await;
    let mut placed = Vec::new();
    let mut token = String::new();
    for title in ["a", "b", "c"] {
        let (ticket, _) = system.create_ticket(&seller, title, 5.0).await;
        let (order, order_token) = system
            .place_order(&buyer, ticket["id"].as_str().unwrap())
            .await;
        placed.push(order);
        token = order_token;
    }
    let (ticket, _) = system.create_ticket(&seller, "theirs", 5.0).await;
    let (_, other_token) = system
        .place_order(&other, ticket["id"].as_str().unwrap())
        .await;

    let response = system
        .get_after(&buyer, "/api/orders", &format!("{token},{other_token}"))
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    let orders: Value = response.json().await.unwrap();
    assert_eq!(
        orders,
        Value::Array(placed.clone()),
        "oldest first, each with its ticket"
    );
    for order in orders.as_array().unwrap() {
        assert_eq!(order["userId"], buyer_id);
        assert_eq!(order["status"], "created");
    }
    let (status, errors) = error_body(
        Client::new()
            .get(system.url("/api/orders"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, errors),
        (
            StatusCode::UNAUTHORIZED,
            json!([{ "message": "Not authorized" }])
        )
    );
}

#[tokio::test]
async fn an_order_is_shown_to_its_owner_only() {
    let system = start_system().await;
    let (buyer, _) = system.signed_in_client().await;
    let (stranger, _) = system.signed_in_client().await;
    let (ticket, _) = system.create_ticket(&buyer, "t", 5.0).await;
    let (order, token) = system
        .place_order(&buyer, ticket["id"].as_str().unwrap())
        .await;
    let path = format!("/api/orders/{}", order["id"].as_str().unwrap());

    let shown = system.get_after(&buyer, &path, &token).await;
    assert_eq!(shown.status(), StatusCode::OK);
    assert_eq!(shown.json::<Value>().await.unwrap(), order);

    let (status, errors) = error_body(system.get_after(&stranger, &path, &token).await).await;
    assert_eq!(
        (status, errors),
        (
            StatusCode::UNAUTHORIZED,
            json!([{ "message": "Not authorized" }])
        )
    );
    let (status, _) = error_body(Client::new().get(system.url(&path)).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for id in [uuid::Uuid::new_v4().to_string(), "nope".to_owned()] {
        let (status, errors) = error_body(
            buyer
                .get(system.url(&format!("/api/orders/{id}")))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (status, errors),
            (StatusCode::NOT_FOUND, json!([{ "message": "Not Found" }]))
        );
    }
}

#[tokio::test]
async fn lists_page_with_limit_and_cursor_and_stay_plain_arrays() {
    let system = start_system().await;
    let (seller, _) = system.signed_in_client().await;
    let mut ids = Vec::new();
    let mut token = String::new();
    for i in 0..5 {
        let (ticket, t) = system.create_ticket(&seller, &format!("t{i}"), 1.0).await;
        ids.push(ticket["id"].as_str().unwrap().to_owned());
        token = t;
    }
    let _ = system
        .get_after(&Client::new(), "/api/tickets", &token)
        .await;

    let mut seen = Vec::new();
    let mut next = Some("/api/tickets?limit=2".to_owned());
    while let Some(path) = next {
        let response = Client::new().get(system.url(&path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        next = response.headers().get("link").map(|link| {
            let link = link.to_str().unwrap();
            link[link.find('<').unwrap() + 1..link.find('>').unwrap()].to_owned()
        });
        let page: Value = response.json().await.unwrap();
        assert!(page.as_array().unwrap().len() <= 2);
        seen.extend(
            page.as_array()
                .unwrap()
                .iter()
                .map(|t| t["id"].as_str().unwrap().to_owned()),
        );
    }
    assert_eq!(seen, ids);

    for bad in ["limit=0", "limit=-1", "limit=abc", "limit=1000000"] {
        let response = Client::new()
            .get(system.url(&format!("/api/tickets?{bad}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test]
async fn a_malformed_consistency_token_is_a_400() {
    let system = start_system().await;
    let response = system
        .get_after(&Client::new(), "/api/tickets", "ticket:nope:1")
        .await;
    let (status, errors) = error_body(response).await;
    assert_eq!(
        (status, errors),
        (
            StatusCode::BAD_REQUEST,
            json!([{ "message": "X-Consistency-Token is malformed" }])
        )
    );
}

/// As the original platform showed them: a cancelled order's ticket is the
/// ticket as it is now (the amount charged stays the order's own).
#[tokio::test]
async fn an_order_shows_its_ticket_as_the_ticket_is_now() {
    let system = start_system().await;
    let (seller, _) = system.signed_in_client().await;
    let (buyer, _) = system.signed_in_client().await;
    let (ticket, _) = system.create_ticket(&seller, "matinee", 20.0).await;
    let ticket_id = ticket["id"].as_str().unwrap();
    let (order, _) = system.place_order(&buyer, ticket_id).await;
    let order_id = order["id"].as_str().unwrap();
    let (cancelled, _, cancel_token) = system
        .command(
            &buyer,
            Method::DELETE,
            &format!("/api/orders/{order_id}"),
            None,
        )
        .await;
    assert_eq!(cancelled, StatusCode::NO_CONTENT);

    let (updated, _, update_token) = system
        .command(
            &seller,
            Method::PUT,
            &format!("/api/tickets/{ticket_id}"),
            Some(json!({ "title": "evening", "price": 35 })),
        )
        .await;
    assert_eq!(updated, StatusCode::OK);
    let token = format!("{cancel_token},{update_token}");
    let shown = system
        .get_after(&buyer, &format!("/api/orders/{order_id}"), &token)
        .await;

    assert_eq!(shown.status(), StatusCode::OK);
    let shown: Value = shown.json().await.unwrap();
    assert_eq!(shown["status"], "cancelled");
    assert_eq!(shown["ticket"]["title"], "evening");
    assert_eq!(shown["ticket"]["price"].as_f64(), Some(35.0));
    assert_eq!(
        shown["ticket"]["version"], 3,
        "created, reserved, released, updated"
    );
}

/// The production shape: the API deployed alone, the projection worker in
/// another process. The gateway still serves pages from memory, and a
/// change the other process projects reaches them at once (it announces
/// its commits), not after the pages' time to live, set here to ten
/// minutes so that only the announcement can explain a fresh page.
#[tokio::test]
async fn a_gateway_alone_serves_pages_from_memory_that_another_process_changes() {
    let gateway = start_system_with(&[
        ("SERVE_ROLES", "gateway"),
        ("PAGE_CACHE_MAX_AGE_MS", "600000"),
    ])
    .await;
    let workers = gateway.beside(&[]).await;
    let (seller, _) = gateway.signed_in_client().await;
    let reader = Client::new();
    let (first, token) = gateway.create_ticket(&seller, "first", 10.0).await;
    let listed = gateway.get_after(&reader, "/api/tickets", &token).await;
    assert_eq!(listed.status(), StatusCode::OK);

    let titles = |page: &Value| -> Vec<String> {
        page.as_array()
            .unwrap()
            .iter()
            .map(|t| t["title"].as_str().unwrap().to_owned())
            .collect()
    };
    for _ in 0..3 {
        let page: Value = reader
            .get(gateway.url("/api/tickets"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(titles(&page), ["first"]);
    }
    let metrics = gateway.metrics(&reader).await.unwrap();
    let hits = samples(&metrics, "page_cache_requests_total", &["result=\"hit\""]);
    assert!(
        hits.iter().any(|(_, value)| *value >= 1.0),
        "the gateway alone served nothing from memory: {hits:?}"
    );

    let (status, _, _) = gateway
        .command(
            &seller,
            Method::PUT,
            &format!("/api/tickets/{}", first["id"].as_str().unwrap()),
            Some(json!({ "title": "renamed", "price": 10.0 })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    eventually(Duration::from_secs(30), || async {
        let page: Value = reader
            .get(gateway.url("/api/tickets"))
            .send()
            .await?
            .json()
            .await?;
        Ok(titles(&page) == ["renamed"])
    })
    .await
    .unwrap();
    drop(workers);
}
