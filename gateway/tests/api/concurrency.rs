use std::collections::BTreeSet;

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{body, spawn_app};

#[tokio::test]
async fn fifty_concurrent_orders_for_one_ticket_give_exactly_one_reservation() {
    let app = spawn_app().await;
    let (seller, _) = app.signed_in_client().await;
    let mut buyers = Vec::new();
    for _ in 0..5 {
        buyers.push(app.signed_in_client().await.0);
    }
    for round in 0..3 {
        let ticket = app
            .create_ticket(&seller, &format!("hot ticket {round}"), json!(50))
            .await;
        let ticket_id = ticket["id"].as_str().unwrap();

        let responses =
            join_all((0..50).map(|i| app.order(&buyers[i % buyers.len()], ticket_id))).await;

        let mut created = 0;
        for response in responses {
            match response.status() {
                StatusCode::CREATED => created += 1,
                StatusCode::BAD_REQUEST => {
                    let body = body(response).await;
                    assert_eq!(
                        body["errors"][0]["message"], "Ticket is already reserved",
                        "{body}"
                    );
                }
                other => panic!("unexpected status {other}"),
            }
        }
        assert_eq!(created, 1, "round {round}");
        // Create and one reservation, nothing else.
        assert_eq!(app.event_count(ticket_id).await, 2);
        let orders: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE event_type = 'OrderPlaced' AND payload->'OrderPlaced'->'ticket'->>'id' = $1",
        )
        .bind(ticket_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
        assert_eq!(orders, 1);
    }
}

#[tokio::test]
async fn concurrent_updates_of_one_ticket_are_all_applied() {
    let app = spawn_app().await;
    let (client, _) = app.signed_in_client().await;
    let ticket = app.create_ticket(&client, "concert", json!(10)).await;
    let path = format!("/api/tickets/{}", ticket["id"].as_str().unwrap());

    let updates = (0..10).map(|i| {
        app.put(
            &client,
            &path,
            json!({ "title": format!("title {i}"), "price": 10 + i }),
        )
    });
    let responses = join_all(updates).await;

    let mut versions = BTreeSet::new();
    for response in responses {
        assert_eq!(response.status(), StatusCode::OK);
        let ticket: Value = body(response).await;
        assert!(versions.insert(ticket["version"].as_u64().unwrap()));
    }
    assert_eq!(versions, (1..=10).collect::<BTreeSet<u64>>());
    assert_eq!(app.event_count(ticket["id"].as_str().unwrap()).await, 11);
}

#[tokio::test]
async fn two_concurrent_updates_give_version_plus_two() {
    let app = spawn_app().await;
    let (client, _) = app.signed_in_client().await;
    let ticket = app.create_ticket(&client, "concert", json!(10)).await;
    let path = format!("/api/tickets/{}", ticket["id"].as_str().unwrap());

    let (a, b) = tokio::join!(
        app.put(&client, &path, json!({ "title": "a", "price": 1 })),
        app.put(&client, &path, json!({ "title": "b", "price": 2 }))
    );

    let versions: BTreeSet<u64> = [body(a).await, body(b).await]
        .iter()
        .map(|t| t["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, BTreeSet::from([1, 2]));
}
