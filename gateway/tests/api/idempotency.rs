use futures::future::join_all;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

use std::time::Duration;

use crate::helpers::{
    assert_errors, body, new_client, spawn_app, spawn_app_through_proxy_with, TestApp,
};

async fn post_with_key(
    app: &TestApp,
    client: &Client,
    path: &str,
    key: &str,
    input: Value,
) -> reqwest::Response {
    client
        .post(app.url(path))
        .header("Idempotency-Key", key)
        .json(&input)
        .send()
        .await
        .unwrap()
}

async fn ticket_events(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'Ticket'")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_retried_create_gets_the_same_response_and_no_second_event() {
    let app = spawn_app().await;
    let (client, _) = app.signed_in_client().await;
    let input = json!({ "title": "concert", "price": 10 });

    let first = post_with_key(&app, &client, "/api/tickets", "key-1", input.clone()).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first = body(first).await;
    let retry = post_with_key(&app, &client, "/api/tickets", "key-1", input).await;

    assert_eq!(retry.status(), StatusCode::CREATED);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.headers()["content-type"], "application/json");
    assert_eq!(body(retry).await, first);
    assert_eq!(ticket_events(&app).await, 1);
}

#[tokio::test]
async fn concurrent_requests_with_one_key_run_once() {
    let app = spawn_app().await;
    let (client, _) = app.signed_in_client().await;
    let input = json!({ "title": "concert", "price": 10 });

    let responses = join_all(
        (0..10).map(|_| post_with_key(&app, &client, "/api/tickets", "same-key", input.clone())),
    )
    .await;

    let mut bodies = Vec::new();
    for response in responses {
        assert_eq!(response.status(), StatusCode::CREATED);
        bodies.push(body(response).await);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    assert_eq!(ticket_events(&app).await, 1);
}

#[tokio::test]
async fn a_key_is_scoped_to_its_user_and_request() {
    let app = spawn_app().await;
    let (alice, _) = app.signed_in_client().await;
    let (bob, _) = app.signed_in_client().await;

    let a = post_with_key(
        &app,
        &alice,
        "/api/tickets",
        "shared",
        json!({ "title": "a", "price": 1 }),
    )
    .await;
    let b = post_with_key(
        &app,
        &bob,
        "/api/tickets",
        "shared",
        json!({ "title": "b", "price": 2 }),
    )
    .await;
    assert_eq!(a.status(), StatusCode::CREATED);
    assert_eq!(b.status(), StatusCode::CREATED);
    assert_ne!(body(a).await["id"], body(b).await["id"]);

    let reused = post_with_key(
        &app,
        &alice,
        "/api/tickets",
        "shared",
        json!({ "title": "other", "price": 1 }),
    )
    .await;
    assert_errors(
        reused,
        StatusCode::BAD_REQUEST,
        &[(
            "Idempotency-Key was already used for a different request",
            None,
        )],
    )
    .await;
    assert_eq!(ticket_events(&app).await, 2);
}

#[tokio::test]
async fn rejected_requests_are_replayed_too() {
    let app = spawn_app().await;
    let (client, _) = app.signed_in_client().await;
    let invalid = json!({ "title": "", "price": 10 });
    for _ in 0..2 {
        let response = post_with_key(&app, &client, "/api/tickets", "bad", invalid.clone()).await;
        assert_errors(
            response,
            StatusCode::BAD_REQUEST,
            &[("Title is required", Some("title"))],
        )
        .await;
    }
}

#[tokio::test]
async fn a_retried_order_reserves_once() {
    let app = spawn_app().await;
    let (client, _) = app.signed_in_client().await;
    let ticket = app.create_ticket(&client, "concert", json!(10)).await;
    let input = json!({ "ticketId": ticket["id"] });

    let first = post_with_key(&app, &client, "/api/orders", "order-1", input.clone()).await;
    let retry = post_with_key(&app, &client, "/api/orders", "order-1", input).await;

    assert_eq!(first.status(), StatusCode::CREATED);
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert_eq!(body(first).await, body(retry).await);
    assert_eq!(app.event_count(ticket["id"].as_str().unwrap()).await, 2);
}

#[tokio::test]
async fn keys_are_validated_after_authentication() {
    let app = spawn_app().await;
    let input = json!({ "title": "concert", "price": 10 });
    let signed_out = post_with_key(&app, &new_client(), "/api/tickets", "k", input.clone()).await;
    assert_errors(
        signed_out,
        StatusCode::UNAUTHORIZED,
        &[("Not authorized", None)],
    )
    .await;

    let (client, _) = app.signed_in_client().await;
    let too_long = post_with_key(&app, &client, "/api/tickets", &"k".repeat(256), input).await;
    assert_errors(
        too_long,
        StatusCode::BAD_REQUEST,
        &[(
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
            None,
        )],
    )
    .await;
}

/// Makes PostgreSQL refuse the next `n` inserts of events of these types
/// (counted by a sequence: not rolled back with the failed transaction).
async fn fail_inserts(app: &TestApp, event_types: &[&str], n: i64) {
    let types = event_types
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = sqlx::raw_sql(&format!(
        "CREATE SEQUENCE injected_faults;
         CREATE FUNCTION inject_fault() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF nextval('injected_faults') <= {n} THEN RAISE EXCEPTION 'injected fault'; END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER inject_fault BEFORE INSERT ON events FOR EACH ROW
           WHEN (NEW.event_type IN ({types})) EXECUTE FUNCTION inject_fault();"
    ))
    .execute(&app.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_retry_after_a_server_error_places_the_same_order() {
    let app = spawn_app().await;
    let (client, _) = app.signed_in_client().await;
    let ticket = app.create_ticket(&client, "concert", json!(10)).await;
    let ticket_id = ticket["id"].as_str().unwrap();
    let input = json!({ "ticketId": ticket_id });
    // The first run reserves the ticket, then both placing the order and
    // releasing the reservation fail: the ticket stays held for its order id.
    fail_inserts(&app, &["OrderPlaced", "TicketReleased"], 2).await;

    let first = post_with_key(&app, &client, "/api/orders", "order-5xx", input.clone()).await;
    assert!(first.status().is_server_error(), "{}", first.status());
    let retry = post_with_key(&app, &client, "/api/orders", "order-5xx", input).await;

    assert_eq!(retry.status(), StatusCode::CREATED);
    let order = body(retry).await;
    let holders: Vec<String> = sqlx::query_scalar(
        "SELECT payload::jsonb #>> '{TicketReserved,order_id}' FROM events
         WHERE aggregate_id = $1 AND event_type = 'TicketReserved'",
    )
    .bind(ticket_id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(holders, [order["id"].as_str().unwrap()]);
    let orders: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT aggregate_id) FROM events WHERE aggregate_type = 'Order'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(orders, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_an_unknown_outcome_finds_the_ticket_of_the_first_run() {
    let wait = Duration::from_millis(500);
    let (app, proxy) = spawn_app_through_proxy_with(wait).await;
    let (client, _) = app.signed_in_client().await;
    let input = json!({ "title": "concert", "price": 10 });

    // The creation's statement (it commits on its own) is held past every
    // bound: the first run cannot know whether its ticket exists.
    proxy.stall_statement("INSERT INTO events", 0);
    let first = tokio::time::timeout(
        Duration::from_secs(10),
        post_with_key(&app, &client, "/api/tickets", "unknown", input.clone()),
    )
    .await
    .expect("the first run is answered within its bound");
    assert_eq!(proxy.stalled_commits(), 1, "the fault was not injected");
    assert_eq!(first.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(first.headers().contains_key("retry-after"));
    // It did commit, in the end.
    proxy.release_stalled();
    tokio::time::timeout(Duration::from_secs(10), async {
        while ticket_events(&app).await == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the held commit lands once released");

    let retry = post_with_key(&app, &client, "/api/tickets", "unknown", input).await;

    assert_eq!(retry.status(), StatusCode::CREATED);
    let ticket = body(retry).await;
    let stored: Vec<String> =
        sqlx::query_scalar("SELECT aggregate_id FROM events WHERE aggregate_type = 'Ticket'")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored, [ticket["id"].as_str().unwrap()]);
}
