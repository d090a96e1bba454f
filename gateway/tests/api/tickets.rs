use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_errors, body, new_client, spawn_app};

#[tokio::test]
async fn create_ticket_answers_201_with_version_0() {
    let app = spawn_app().await;
    let (client, user_id) = app.signed_in_client().await;

    let response = app
        .post(
            &client,
            "/api/tickets",
            json!({ "title": "concert", "price": 20 }),
        )
        .await;

    assert_eq!(response.status(), StatusCode::CREATED);
    let ticket = body(response).await;
    assert_eq!(ticket["title"], "concert");
    assert_eq!(ticket["price"], 20);
    assert_eq!(ticket["userId"], user_id);
    assert_eq!(ticket["version"], 0);
    assert!(ticket.get("orderId").is_none(), "{ticket}");
    assert_eq!(app.event_count(ticket["id"].as_str().unwrap()).await, 1);
}

#[tokio::test]
async fn prices_keep_exact_cents() {
    let app = spawn_app().await;
    let (client, _) = app.signed_in_client().await;
    for (sent, returned) in [
        (json!(19.99), json!(19.99)),
        (json!(0.1), json!(0.1)),
        (json!(100), json!(100)),
        (json!(10.50), json!(10.5)),
        (json!(999999.99), json!(999999.99)),
    ] {
        let ticket = app.create_ticket(&client, "t", sent.clone()).await;
        assert_eq!(ticket["price"], returned, "sent {sent}");
    }
    let stored: Vec<i64> = sqlx::query_scalar(
        "SELECT (payload->'TicketCreated'->>'price_cents')::bigint FROM events ORDER BY global_position",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(stored, vec![1999, 10, 10000, 1050, 99_999_999]);
}

#[tokio::test]
async fn create_ticket_signed_out_is_401_even_with_an_invalid_body() {
    let app = spawn_app().await;
    for input in [
        json!({ "title": "concert", "price": 20 }),
        json!({ "title": "", "price": -1 }),
    ] {
        let response = app.post(&new_client(), "/api/tickets", input).await;
        assert_errors(
            response,
            StatusCode::UNAUTHORIZED,
            &[("Not authorized", None)],
        )
        .await;
    }
}

const TITLE: &str = "Title is required";
const PRICE: &str = "Price must be greater than 0";

/// An input and the errors it must produce, as (message, field).
type Case = (Value, Vec<(&'static str, Option<&'static str>)>);

fn invalid_ticket_inputs() -> Vec<Case> {
    vec![
        (json!({ "price": 10 }), vec![(TITLE, Some("title"))]),
        (
            json!({ "title": "", "price": 10 }),
            vec![(TITLE, Some("title"))],
        ),
        (
            json!({ "title": "   ", "price": 10 }),
            vec![(TITLE, Some("title"))],
        ),
        (
            json!({ "title": 42, "price": 10 }),
            vec![(TITLE, Some("title"))],
        ),
        (
            json!({ "title": "t".repeat(201), "price": 10 }),
            vec![("Title must be at most 200 characters", Some("title"))],
        ),
        (json!({ "title": "concert" }), vec![(PRICE, Some("price"))]),
        (
            json!({ "title": "concert", "price": -10 }),
            vec![(PRICE, Some("price"))],
        ),
        (
            json!({ "title": "concert", "price": 0 }),
            vec![(PRICE, Some("price"))],
        ),
        (
            json!({ "title": "concert", "price": "abc" }),
            vec![(PRICE, Some("price"))],
        ),
        (
            json!({ "title": "concert", "price": "NaN" }),
            vec![(PRICE, Some("price"))],
        ),
        (
            json!({ "title": "concert", "price": "Infinity" }),
            vec![(PRICE, Some("price"))],
        ),
        (
            json!({ "title": "concert", "price": "" }),
            vec![(PRICE, Some("price"))],
        ),
        (
            json!({ "title": "concert", "price": "0.00" }),
            vec![(PRICE, Some("price"))],
        ),
        (
            json!({ "title": "concert", "price": "10.001" }),
            vec![("Price must have at most 2 decimal places", Some("price"))],
        ),
        (
            json!({ "title": "concert", "price": null }),
            vec![(PRICE, Some("price"))],
        ),
        (
            json!({ "title": "concert", "price": true }),
            vec![(PRICE, Some("price"))],
        ),
        (
            json!({ "title": "concert", "price": 10.001 }),
            vec![("Price must have at most 2 decimal places", Some("price"))],
        ),
        (
            json!({ "title": "concert", "price": 1e12 }),
            vec![("Price must not exceed 999999.99", Some("price"))],
        ),
        (
            json!({ "title": "concert", "price": 1.7e308 }),
            vec![("Price must not exceed 999999.99", Some("price"))],
        ),
        (
            json!({ "title": "", "price": -1 }),
            vec![(TITLE, Some("title")), (PRICE, Some("price"))],
        ),
    ]
}

#[tokio::test]
async fn create_ticket_rejects_invalid_title_and_price() {
    let app = spawn_app().await;
    let (client, _) = app.signed_in_client().await;
    for (input, expected) in invalid_ticket_inputs() {
        let response = app.post(&client, "/api/tickets", input.clone()).await;
        assert_errors(response, StatusCode::BAD_REQUEST, &expected).await;
    }
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(events, 0, "no invalid input may produce an event");
}

#[tokio::test]
async fn update_ticket_changes_title_and_price_and_bumps_the_version() {
    let app = spawn_app().await;
    let (client, _) = app.signed_in_client().await;
    let ticket = app.create_ticket(&client, "concert", json!(20)).await;
    let id = ticket["id"].as_str().unwrap();

    let response = app
        .put(
            &client,
            &format!("/api/tickets/{id}"),
            json!({ "title": "new title", "price": 100.5 }),
        )
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    let updated = body(response).await;
    assert_eq!(updated["id"], id);
    assert_eq!(updated["title"], "new title");
    assert_eq!(updated["price"], 100.5);
    assert_eq!(updated["version"], 1);
    assert_eq!(updated["userId"], ticket["userId"]);
}

#[tokio::test]
async fn update_ticket_errors_come_in_the_contract_order() {
    let app = spawn_app().await;
    let (owner, _) = app.signed_in_client().await;
    let (other, _) = app.signed_in_client().await;
    let ticket = app.create_ticket(&owner, "concert", json!(20)).await;
    let path = format!("/api/tickets/{}", ticket["id"].as_str().unwrap());
    let valid = json!({ "title": "x", "price": 5 });

    // 401 signed out, before validation.
    let response = app.put(&new_client(), &path, json!({ "title": "" })).await;
    assert_errors(
        response,
        StatusCode::UNAUTHORIZED,
        &[("Not authorized", None)],
    )
    .await;
    // 400 validation, before existence.
    let response = app
        .put(
            &owner,
            "/api/tickets/not-a-ticket",
            json!({ "title": "" , "price": 5 }),
        )
        .await;
    assert_errors(response, StatusCode::BAD_REQUEST, &[(TITLE, Some("title"))]).await;
    // 404 unknown or malformed id.
    for unknown in [uuid::Uuid::new_v4().to_string(), "not-a-ticket".to_owned()] {
        let response = app
            .put(&owner, &format!("/api/tickets/{unknown}"), valid.clone())
            .await;
        assert_errors(response, StatusCode::NOT_FOUND, &[("Not Found", None)]).await;
    }
    // 401 not the owner.
    let response = app.put(&other, &path, valid.clone()).await;
    assert_errors(
        response,
        StatusCode::UNAUTHORIZED,
        &[("Not authorized", None)],
    )
    .await;
    // 400 reserved, checked before ownership.
    assert_eq!(
        app.order(&other, ticket["id"].as_str().unwrap())
            .await
            .status(),
        StatusCode::CREATED
    );
    for client in [&owner, &other] {
        let response = app.put(client, &path, valid.clone()).await;
        assert_errors(
            response,
            StatusCode::BAD_REQUEST,
            &[("Cannot edit a reserved ticket", None)],
        )
        .await;
    }
}

#[tokio::test]
async fn update_ticket_rejects_invalid_input() {
    let app = spawn_app().await;
    let (client, _) = app.signed_in_client().await;
    let ticket = app.create_ticket(&client, "concert", json!(20)).await;
    let path = format!("/api/tickets/{}", ticket["id"].as_str().unwrap());
    for (input, expected) in invalid_ticket_inputs() {
        // The update words a missing or non-positive price as the contract does.
        let expected: Vec<_> = expected
            .into_iter()
            .map(|(message, field)| match message {
                PRICE => ("Price must be provided and must be greater than 0", field),
                other => (other, field),
            })
            .collect();
        let response = app.put(&client, &path, input).await;
        assert_errors(response, StatusCode::BAD_REQUEST, &expected).await;
    }
    assert_eq!(app.event_count(ticket["id"].as_str().unwrap()).await, 1);
}

/// What an HTML form posts: the price field's text.
#[tokio::test]
async fn a_price_given_as_decimal_text_is_parsed_exactly_like_a_number() {
    let app = spawn_app().await;
    let (client, _) = app.signed_in_client().await;
    for (text, expected) in [
        ("25.00", 25.0),
        (" 19.99 ", 19.99),
        ("10", 10.0),
        ("0.01", 0.01),
    ] {
        let response = app
            .post(
                &client,
                "/api/tickets",
                json!({ "title": "concert", "price": text }),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED, "{text:?}");
        assert_eq!(
            body(response).await["price"].as_f64(),
            Some(expected),
            "{text:?}"
        );
    }
}

#[tokio::test]
async fn an_update_words_a_bad_price_as_the_contract_does() {
    let app = spawn_app().await;
    let (client, _) = app.signed_in_client().await;
    let ticket = app.create_ticket(&client, "concert", json!(20)).await;
    let path = format!("/api/tickets/{}", ticket["id"].as_str().unwrap());
    for body in [
        json!({ "title": "x" }),
        json!({ "title": "x", "price": 0 }),
        json!({ "title": "x", "price": "abc" }),
    ] {
        let response = app.put(&client, &path, body).await;
        assert_errors(
            response,
            StatusCode::BAD_REQUEST,
            &[(
                "Price must be provided and must be greater than 0",
                Some("price"),
            )],
        )
        .await;
    }
    let response = app.put(&client, &path, json!({ "price": 5 })).await;
    assert_errors(response, StatusCode::BAD_REQUEST, &[(TITLE, Some("title"))]).await;
}
