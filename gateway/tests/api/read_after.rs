//! Reads that wait for a consistency token: an impossible token is refused
//! at once, and waiting reads cost the database one shared watch, not a
//! polling loop each.

use std::time::Duration;

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{assert_errors, spawn_app_with, TestApp};

/// Transactions committed in the app's database so far (PostgreSQL's
/// statistics, flushed by each backend within a second of going idle).
async fn transactions(app: &TestApp) -> i64 {
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let _: Option<()> = sqlx::query_scalar("SELECT pg_stat_clear_snapshot()")
        .fetch_optional(&app.pool)
        .await
        .unwrap();
    sqlx::query_scalar(
        "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_token_naming_a_change_never_made_is_refused_at_once() {
    let app = spawn_app_with(|settings| settings.consistency_wait = Duration::from_secs(30)).await;
    let (client, _) = app.signed_in_client().await;
    let ticket = app.create_ticket(&client, "concert", json!(10)).await;
    let id = ticket["id"].as_str().unwrap();
    let unknown = Uuid::new_v4();
    for (path, token) in [
        (
            format!("/api/tickets/{unknown}"),
            format!("ticket:{unknown}:9223372036854775807"),
        ),
        (
            format!("/api/tickets/{unknown}"),
            format!("ticket:{unknown}:1"),
        ),
        (format!("/api/tickets/{id}"), format!("ticket:{id}:2")),
        (
            "/api/orders".to_owned(),
            format!("order:{unknown}:1,ticket:{id}:1"),
        ),
    ] {
        let response = tokio::time::timeout(
            Duration::from_secs(10),
            client
                .get(app.url(&path))
                .header("x-consistency-token", &token)
                .send(),
        )
        .await
        .unwrap_or_else(|_| panic!("{token} was waited on"))
        .unwrap();
        assert_errors(
            response,
            StatusCode::BAD_REQUEST,
            &[(
                "X-Consistency-Token names a change that was never made",
                None,
            )],
        )
        .await;
    }
}

#[tokio::test]
async fn waiting_reads_share_one_watch_and_wake_when_the_view_catches_up() {
    let app = spawn_app_with(|settings| settings.consistency_wait = Duration::from_secs(20)).await;
    let (client, _) = app.signed_in_client().await;
    let ticket = app.create_ticket(&client, "concert", json!(10)).await;
    let id = ticket["id"].as_str().unwrap().to_owned();
    let token = format!("ticket:{id}:1");
    let waiters = 200;
    let before = transactions(&app).await;

    // Act: many reads wait for a view no projection has written yet (this
    // app runs none); then the view appears, as the projection writes it.
    let reads = join_all((0..waiters).map(|_| {
        app.client
            .get(app.url(&format!("/api/tickets/{id}")))
            .header("x-consistency-token", &token)
            .send()
    }));
    let catch_up = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        // Meanwhile other requests are served: the waits hold no connection.
        let listed = tokio::time::timeout(
            Duration::from_secs(5),
            app.client.get(app.url("/api/tickets")).send(),
        )
        .await
        .expect("a plain read is served while others wait")
        .unwrap();
        assert_eq!(listed.status(), StatusCode::OK);
        sqlx::query(
            "INSERT INTO ticket_views (id, title, price_cents, user_id, version, last_sequence) \
             VALUES ($1, 'concert', 1000, 'seller', 0, 1)",
        )
        .bind(&id)
        .execute(&app.pool)
        .await
        .unwrap();
    };
    let (responses, ()) = tokio::join!(reads, catch_up);
    let after = transactions(&app).await;

    // Assert: every read was answered with the view; the database saw a
    // bounded number of transactions for all of them together (a few
    // hundred ticks of one watch, one check per request), where a loop per
    // request polls every few milliseconds.
    for response in responses {
        assert_eq!(response.unwrap().status(), StatusCode::OK);
    }
    let spent = after - before;
    println!("{waiters} waiting reads over 3 s: {spent} transactions");
    assert!(
        spent < i64::from(waiters) * 5,
        "{spent} transactions for {waiters} waiting reads"
    );
}

#[tokio::test]
async fn a_command_sets_the_consistency_cookie_merged_with_the_earlier_one() {
    let app = spawn_app_with(|_| {}).await;
    let (client, _) = app.signed_in_client().await;
    let first = app
        .post(
            &client,
            "/api/tickets",
            json!({ "title": "one", "price": 10 }),
        )
        .await;
    let first_token = first.headers()["x-consistency-token"]
        .to_str()
        .unwrap()
        .to_owned();
    let second = app
        .post(
            &client,
            "/api/tickets",
            json!({ "title": "two", "price": 10 }),
        )
        .await;

    let cookie = second
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .map(|value| value.to_str().unwrap().to_owned())
        .find(|value| value.starts_with("consistency="))
        .expect("a consistency cookie");
    let second_token = second.headers()["x-consistency-token"]
        .to_str()
        .unwrap()
        .to_owned();
    for attribute in ["Path=/api", "HttpOnly", "SameSite=Lax", "Max-Age=60"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let value = cookie["consistency=".len()..].split(';').next().unwrap();
    let marks: Vec<&str> = value.split('|').collect();
    assert_eq!(marks, [second_token.as_str(), first_token.as_str()]);
}
