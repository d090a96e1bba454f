use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_errors, body, new_client, spawn_app, spawn_app_with};

#[tokio::test]
async fn ordering_a_ticket_reserves_it_for_the_expiration_window() {
    let app = spawn_app().await;
    let (seller, _) = app.signed_in_client().await;
    let (buyer, buyer_id) = app.signed_in_client().await;
    let ticket = app.create_ticket(&seller, "concert", json!(19.99)).await;
    let ticket_id = ticket["id"].as_str().unwrap();
    let before = Utc::now();

    let response = app.order(&buyer, ticket_id).await;

    assert_eq!(response.status(), StatusCode::CREATED);
    let order = body(response).await;
    assert_eq!(order["status"], "created");
    assert_eq!(order["userId"], buyer_id);
    assert_eq!(order["version"], 0);
    assert_eq!(
        order["ticket"],
        json!({ "id": ticket_id, "title": "concert", "price": 19.99, "version": 1 })
    );
    let expires_at: DateTime<Utc> = order["expiresAt"].as_str().unwrap().parse().unwrap();
    let window = (expires_at - before).num_seconds();
    assert!(
        (899..=901).contains(&window),
        "expiresAt {expires_at} is {window}s away"
    );
    // Reserved: nobody else can order it.
    let (other, _) = app.signed_in_client().await;
    assert_errors(
        app.order(&other, ticket_id).await,
        StatusCode::BAD_REQUEST,
        &[("Ticket is already reserved", None)],
    )
    .await;
}

#[tokio::test]
async fn the_expiration_window_is_configurable() {
    let app = spawn_app_with(|s| s.order_expiration = std::time::Duration::from_secs(60)).await;
    let (client, _) = app.signed_in_client().await;
    let ticket = app.create_ticket(&client, "concert", json!(5)).await;
    let before = Utc::now();
    let order = body(app.order(&client, ticket["id"].as_str().unwrap()).await).await;
    let expires_at: DateTime<Utc> = order["expiresAt"].as_str().unwrap().parse().unwrap();
    assert!((59..=61).contains(&(expires_at - before).num_seconds()));
}

#[tokio::test]
async fn create_order_rejects_bad_requests() {
    let app = spawn_app().await;
    let (client, _) = app.signed_in_client().await;

    let response = app.post(&new_client(), "/api/orders", json!({})).await;
    assert_errors(
        response,
        StatusCode::UNAUTHORIZED,
        &[("Not authorized", None)],
    )
    .await;
    for input in [
        json!({}),
        json!({ "ticketId": "" }),
        json!({ "ticketId": 12 }),
        json!({ "ticketId": null }),
    ] {
        let response = app.post(&client, "/api/orders", input).await;
        assert_errors(
            response,
            StatusCode::BAD_REQUEST,
            &[("TicketId must be provided", Some("ticketId"))],
        )
        .await;
    }
    for unknown in [uuid::Uuid::new_v4().to_string(), "not-a-ticket".to_owned()] {
        assert_errors(
            app.order(&client, &unknown).await,
            StatusCode::NOT_FOUND,
            &[("Not Found", None)],
        )
        .await;
    }
}

#[tokio::test]
async fn cancelling_an_order_releases_its_ticket() {
    let app = spawn_app().await;
    let (seller, _) = app.signed_in_client().await;
    let (buyer, _) = app.signed_in_client().await;
    let ticket = app.create_ticket(&seller, "concert", json!(10)).await;
    let ticket_id = ticket["id"].as_str().unwrap();
    let order = body(app.order(&buyer, ticket_id).await).await;
    let order_path = format!("/api/orders/{}", order["id"].as_str().unwrap());

    let response = app.delete(&buyer, &order_path).await;

    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    // Released: the seller may edit it again (create, reserve, release, update).
    let updated = app
        .put(
            &seller,
            &format!("/api/tickets/{ticket_id}"),
            json!({ "title": "again", "price": 11 }),
        )
        .await;
    assert_eq!(updated.status(), StatusCode::OK);
    assert_eq!(body(updated).await["version"], 3);
    // And anyone may order it again.
    assert_eq!(
        app.order(&buyer, ticket_id).await.status(),
        StatusCode::CREATED
    );
    // Cancelling again is harmless and does not release the new order's hold.
    assert_eq!(
        app.delete(&buyer, &order_path).await.status(),
        StatusCode::NO_CONTENT
    );
    let (other, _) = app.signed_in_client().await;
    assert_errors(
        app.order(&other, ticket_id).await,
        StatusCode::BAD_REQUEST,
        &[("Ticket is already reserved", None)],
    )
    .await;
}

#[tokio::test]
async fn cancel_order_rejects_strangers_and_unknown_orders() {
    let app = spawn_app().await;
    let (buyer, _) = app.signed_in_client().await;
    let (stranger, _) = app.signed_in_client().await;
    let ticket = app.create_ticket(&buyer, "concert", json!(10)).await;
    let order = body(app.order(&buyer, ticket["id"].as_str().unwrap()).await).await;
    let order_path = format!("/api/orders/{}", order["id"].as_str().unwrap());

    assert_errors(
        app.delete(&new_client(), &order_path).await,
        StatusCode::UNAUTHORIZED,
        &[("Not authorized", None)],
    )
    .await;
    for unknown in [uuid::Uuid::new_v4().to_string(), "nope".to_owned()] {
        let response = app.delete(&buyer, &format!("/api/orders/{unknown}")).await;
        assert_errors(response, StatusCode::NOT_FOUND, &[("Not Found", None)]).await;
    }
    assert_errors(
        app.delete(&stranger, &order_path).await,
        StatusCode::UNAUTHORIZED,
        &[("Not authorized", None)],
    )
    .await;
    assert_eq!(
        app.event_count(order["id"].as_str().unwrap()).await,
        1,
        "the order is still placed"
    );
}

#[tokio::test]
async fn concurrent_placements_cannot_pass_the_live_order_cap() {
    let app = crate::helpers::spawn_app_with(|settings| settings.max_live_orders = 3).await;
    let (seller, _) = app.signed_in_client().await;
    let (buyer, _) = app.signed_in_client().await;
    let mut tickets = Vec::new();
    for n in 0..10 {
        let ticket = app
            .create_ticket(&seller, &format!("seat {n}"), serde_json::json!(10))
            .await;
        tickets.push(ticket["id"].as_str().unwrap().to_owned());
    }

    let responses = futures::future::join_all(tickets.iter().map(|id| app.order(&buyer, id))).await;

    let mut placed = 0;
    for response in responses {
        if response.status() == reqwest::StatusCode::CREATED {
            placed += 1;
        } else {
            crate::helpers::assert_errors(
                response,
                reqwest::StatusCode::BAD_REQUEST,
                &[(
                    "You have too many open orders; pay for or cancel one first",
                    None,
                )],
            )
            .await;
        }
    }
    assert_eq!(placed, 3);
    let held: i64 = sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE event_type = 'TicketReserved') \
              - count(*) FILTER (WHERE event_type = 'TicketReleased') FROM events",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(held, 3, "a refused placement gives its ticket back");
    let orders: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'OrderPlaced'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(orders, 3);
}
