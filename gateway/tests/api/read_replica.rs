//! Reads from a replica (`READ_DATABASE_URL`). No replica runs here, so the
//! read pool is a stand-in (see `spawn_app_with_replica`): its sessions see
//! only the `replica` schema's copies of the views, which the test fills
//! when it chooses (the replica's lag), and refuse every write, as a hot
//! standby does. What the lists and shows answer therefore tells which pool
//! they read, and any write sent to the read pool would fail loudly.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{assert_errors, body, spawn_app_with_replica, TestApp};

/// The projection's work on the primary: the ticket's view row.
async fn project_ticket(app: &TestApp, ticket: &Value, order_id: Option<&str>, sequence: i64) {
    sqlx::query(
        "INSERT INTO ticket_views (id, title, price_cents, user_id, order_id, version, last_sequence) \
         VALUES ($1, $2, 1000, $3, $4, $5 - 1, $5) \
         ON CONFLICT (id) DO UPDATE SET order_id = $4, version = $5 - 1, last_sequence = $5",
    )
    .bind(ticket["id"].as_str().unwrap())
    .bind(ticket["title"].as_str().unwrap())
    .bind(ticket["userId"].as_str().unwrap())
    .bind(order_id)
    .bind(sequence)
    .execute(&app.pool)
    .await
    .unwrap();
}

/// The projection's work on the primary: the order's view row.
async fn project_order(app: &TestApp, order: &Value) {
    sqlx::query(
        "INSERT INTO order_views (id, user_id, status, expires_at, ticket_id, ticket_title, \
           ticket_price_cents, ticket_version, version, last_sequence, placed_position) \
         SELECT $1, $2, 'created', now() + interval '15 minutes', id, title, price_cents, \
           version, 0, 1, 1 FROM ticket_views WHERE id = $3",
    )
    .bind(order["id"].as_str().unwrap())
    .bind(order["userId"].as_str().unwrap())
    .bind(order["ticket"]["id"].as_str().unwrap())
    .execute(&app.pool)
    .await
    .unwrap();
}

fn ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn lists_and_shows_read_the_replica_and_writes_go_to_the_primary() {
    let (app, replica) = spawn_app_with_replica(|_| {}).await;
    // Sign-up, sign-in and the commands run on the primary: each of them
    // writes, which the read pool refuses.
    let (seller, _) = app.signed_in_client().await;
    let (buyer, _) = app.signed_in_client().await;
    let ticket = app.create_ticket(&seller, "concert", json!(10)).await;
    let id = ticket["id"].as_str().unwrap().to_owned();
    project_ticket(&app, &ticket, None, 1).await;

    // The primary shows the ticket; the replica has not caught up, and the
    // lists and shows answer what the replica holds.
    let listed = body(app.get(&app.client, "/api/tickets").await).await;
    assert!(ids(&listed).is_empty(), "{listed}");
    let shown = app.get(&app.client, &format!("/api/tickets/{id}")).await;
    assert_eq!(shown.status(), StatusCode::NOT_FOUND);
    app.replicate().await;
    let listed = body(app.get(&app.client, "/api/tickets").await).await;
    assert_eq!(ids(&listed), [id.as_str()]);
    let shown = app.get(&app.client, &format!("/api/tickets/{id}")).await;
    assert_eq!(shown.status(), StatusCode::OK);

    // Writes keep working: an update, an order (its live-order slot is a
    // write too), and a cancel.
    let updated = app
        .put(
            &seller,
            &format!("/api/tickets/{id}"),
            json!({ "title": "concert", "price": 12 }),
        )
        .await;
    assert_eq!(updated.status(), StatusCode::OK);
    let placed = app.order(&buyer, &id).await;
    assert_eq!(placed.status(), StatusCode::CREATED);
    let order = body(placed).await;
    let order_id = order["id"].as_str().unwrap().to_owned();
    project_ticket(&app, &ticket, Some(&order_id), 3).await;
    project_order(&app, &order).await;

    let orders = body(app.get(&buyer, "/api/orders").await).await;
    assert!(ids(&orders).is_empty(), "{orders}");
    let shown = app.get(&buyer, &format!("/api/orders/{order_id}")).await;
    assert_eq!(shown.status(), StatusCode::NOT_FOUND);
    app.replicate().await;
    let orders = body(app.get(&buyer, "/api/orders").await).await;
    assert_eq!(ids(&orders), [order_id.as_str()]);
    let shown = app.get(&buyer, &format!("/api/orders/{order_id}")).await;
    assert_eq!(shown.status(), StatusCode::OK);
    // Reserved now, so no longer for sale: the replica's answer.
    let listed = body(app.get(&app.client, "/api/tickets").await).await;
    assert!(ids(&listed).is_empty(), "{listed}");

    let cancelled = app.delete(&buyer, &format!("/api/orders/{order_id}")).await;
    assert_eq!(cancelled.status(), StatusCode::NO_CONTENT);
    let signed_out = app.post(&buyer, "/api/users/signout", json!({})).await;
    assert!(signed_out.status().is_success(), "{}", signed_out.status());

    // History and asOf read the event store on the primary: complete at
    // once, though the replica has neither the events nor the later views.
    let history = app
        .get(&seller, &format!("/api/tickets/{id}/history"))
        .await;
    assert_eq!(history.status(), StatusCode::OK);
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let as_of = app
        .get(&app.client, &format!("/api/tickets/{id}?asOf={now}"))
        .await;
    assert_eq!(as_of.status(), StatusCode::OK);

    // The read pool really cannot write: had any of the writes above gone
    // through it, they would have failed like this.
    let refused = sqlx::query("INSERT INTO ticket_views (id, title, price_cents, user_id, version, last_sequence) VALUES ('x', 'x', 1, 'x', 0, 1)")
        .execute(&replica)
        .await
        .expect_err("the read pool refuses writes");
    assert!(
        refused.to_string().contains("read-only transaction"),
        "{refused}"
    );
    // And the replica's sessions are the ones named for it.
    let readers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE application_name = 'ticketing-read' AND datname = current_database()",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(readers > 0);
}

#[tokio::test]
async fn a_token_waits_until_the_replica_shows_the_write() {
    let (app, _replica) =
        spawn_app_with_replica(|settings| settings.consistency_wait = Duration::from_secs(20))
            .await;
    let (client, _) = app.signed_in_client().await;
    let created = app
        .post(
            &client,
            "/api/tickets",
            json!({ "title": "concert", "price": 10 }),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let token = created
        .headers()
        .get("x-consistency-token")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let ticket = body(created).await;
    let id = ticket["id"].as_str().unwrap().to_owned();
    // Applied on the primary at once: a wait watching the primary would
    // end now and then read a replica that lacks the row.
    project_ticket(&app, &ticket, None, 1).await;

    // The replica holds neither the events nor the view: the write is
    // still known to exist (the store is asked on the primary), so the
    // read waits instead of being refused, and ends when the replica
    // catches up.
    let lag = Duration::from_millis(1_500);
    let started = Instant::now();
    let read = async {
        let shown = app
            .client
            .get(app.url(&format!("/api/tickets/{id}")))
            .header("x-consistency-token", &token)
            .send()
            .await
            .unwrap();
        (shown, started.elapsed())
    };
    let catch_up = async {
        tokio::time::sleep(lag).await;
        app.replicate().await;
    };
    let ((shown, took), ()) = tokio::join!(read, catch_up);
    assert_eq!(shown.status(), StatusCode::OK);
    assert_eq!(body(shown).await["id"], id.as_str());
    assert!(
        took >= lag,
        "answered after {took:?}, before the replica had the row"
    );

    let listed = app
        .client
        .get(app.url("/api/tickets"))
        .header("x-consistency-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(ids(&body(listed).await), [id.as_str()]);

    // A token beyond the store is still refused at once.
    let beyond = format!("ticket:{id}:2");
    let refused = tokio::time::timeout(
        Duration::from_secs(5),
        app.client
            .get(app.url(&format!("/api/tickets/{id}")))
            .header("x-consistency-token", &beyond)
            .send(),
    )
    .await
    .expect("refused without waiting")
    .unwrap();
    assert_errors(
        refused,
        StatusCode::BAD_REQUEST,
        &[(
            "X-Consistency-Token names a change that was never made",
            None,
        )],
    )
    .await;
    let unknown = Uuid::new_v4();
    let refused = app
        .client
        .get(app.url("/api/tickets"))
        .header("x-consistency-token", format!("ticket:{unknown}:1"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn readiness_requires_the_replica_to_answer() {
    let (app, replica) = spawn_app_with_replica(|_| {}).await;
    let ready = app.get(&app.client, "/readyz").await;
    assert_eq!(ready.status(), StatusCode::OK);

    // The replica goes away (its pool is the app's: closing it here closes
    // it there).
    replica.close().await;

    let ready = app.get(&app.client, "/readyz").await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let health = body(ready).await;
    assert_eq!(health["reason"], "read database unavailable");
    // Writes do not need it.
    let (client, _) = app.signed_in_client().await;
    let _ = app.create_ticket(&client, "concert", json!(10)).await;
}
