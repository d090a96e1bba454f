//! A client that sends back the consistency token of its write never reads
//! a state older than that write.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::start_system;

#[tokio::test]
async fn create_then_read_with_the_token_is_never_stale() {
    let system = start_system().await;
    let (client, _) = system.signed_in_client().await;
    let mut stale = 0;
    for i in 0..1000 {
        let (ticket, token) = system
            .create_ticket(&client, &format!("ticket {i}"), 1.0)
            .await;
        let id = ticket["id"].as_str().unwrap();
        let response = system
            .get_after(&client, &format!("/api/tickets/{id}"), &token)
            .await;
        assert_eq!(response.status(), StatusCode::OK, "iteration {i}");
        let read: Value = response.json().await.unwrap();
        if read != ticket {
            stale += 1;
        }
    }
    assert_eq!(stale, 0, "reads older than the client's own write");
}

#[tokio::test]
async fn update_then_read_with_the_token_shows_the_update() {
    let system = start_system().await;
    let (client, _) = system.signed_in_client().await;
    let (ticket, _) = system.create_ticket(&client, "v0", 1.0).await;
    let path = format!("/api/tickets/{}", ticket["id"].as_str().unwrap());
    for i in 1..=100 {
        let (status, updated, token) = system
            .command(
                &client,
                Method::PUT,
                &path,
                Some(json!({ "title": format!("v{i}"), "price": 1 })),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let read: Value = system
            .get_after(&client, &path, &token)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(read, updated, "iteration {i}");
        assert_eq!(read["version"], i);
    }
}

/// A browser app written for the original platform sends no token; the
/// cookie the gateway sets on each command carries it instead.
#[tokio::test]
async fn a_client_that_only_keeps_cookies_always_lists_the_ticket_it_just_created() {
    let system = start_system().await;
    let (seller, _) = system.signed_in_client().await;
    let mut missed = 0;
    for n in 0..40 {
        let (ticket, _) = system
            .create_ticket(&seller, &format!("seat {n}"), 10.0)
            .await;
        let listed: Vec<Value> = seller
            .get(format!("{}/api/tickets?limit=1000", system.address))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !listed.iter().any(|t| t["id"] == ticket["id"]) {
            missed += 1;
        }
    }
    assert_eq!(
        missed, 0,
        "{missed} of 40 lists missed the ticket just created"
    );
}
