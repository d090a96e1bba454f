//! `ticketing history`: the operator's view of the events the API's
//! history endpoints list.

use std::process::{Command, Output};

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{start_system, System};

fn history(system: &System, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ticketing"))
        .arg("history")
        .args(args)
        .env("DATABASE_URL", system.database_url())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

async fn post(
    system: &System,
    client: &Client,
    path: &str,
    body: Value,
    correlation: &str,
) -> Value {
    let response = client
        .post(system.url(path))
        .header("x-correlation-id", correlation)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert!(
        status == StatusCode::CREATED || status == StatusCode::BAD_REQUEST,
        "{status} {body}"
    );
    body
}

async fn endpoint(system: &System, client: &Client, path: &str) -> Vec<Value> {
    let response = client.get(system.url(path)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

#[tokio::test]
async fn given_an_order_declined_then_paid_when_an_operator_runs_history_then_it_prints_the_events_the_endpoint_lists(
) {
    let system = start_system().await;
    let (seller, _) = system.signed_in_client().await;
    let (buyer, buyer_id) = system.signed_in_client().await;
    let ticket = post(
        &system,
        &seller,
        "/api/tickets",
        json!({ "title": "concert", "price": 19.99 }),
        "create",
    )
    .await;
    let order = post(
        &system,
        &buyer,
        "/api/orders",
        json!({ "ticketId": ticket["id"] }),
        "place",
    )
    .await;
    let order_id = order["id"].as_str().unwrap().to_owned();
    for (token, correlation) in [("tok_chargeDeclined", "declined"), ("tok_visa", "paid")] {
        let _ = post(
            &system,
            &buyer,
            "/api/payments",
            json!({ "token": token, "orderId": order_id }),
            correlation,
        )
        .await;
    }
    let listed = endpoint(&system, &buyer, &format!("/api/orders/{order_id}/history")).await;
    let aggregate = format!("order:{order_id}");

    let first_at = listed[0]["timestamp"].as_str().unwrap();

    let json_output = history(&system, &[&aggregate, "--json"]);
    let table_output = history(&system, &[&aggregate]);
    let as_of_output = history(&system, &[&aggregate, "--json", "--as-of", first_at]);

    assert_eq!(json_output.status.code(), Some(0), "{json_output:?}");
    let printed: Vec<Value> = serde_json::from_slice(&json_output.stdout).unwrap();
    assert_eq!(printed, listed);
    assert_eq!(printed.len(), 9, "{printed:#?}");

    assert_eq!(table_output.status.code(), Some(0), "{table_output:?}");
    let table = String::from_utf8(table_output.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("POSITION"), "{table}");
    assert_eq!(lines.len(), listed.len() + 1, "{table}");
    for (line, event) in lines[1..].iter().zip(&listed) {
        for key in ["eventType", "aggregateId", "correlationId"] {
            let value = event[key].as_str().unwrap();
            assert!(line.contains(value), "{key} {value} missing from {line}");
        }
    }
    assert!(table.contains(&buyer_id), "{table}");

    assert_eq!(as_of_output.status.code(), Some(0), "{as_of_output:?}");
    let placed_only: Vec<Value> = serde_json::from_slice(&as_of_output.stdout).unwrap();
    assert_eq!(placed_only, listed[..1]);
}

#[tokio::test]
async fn given_a_reserved_ticket_when_an_operator_runs_history_then_it_shows_the_events_the_seller_sees_and_whose_they_were(
) {
    let system = start_system().await;
    let (seller, _) = system.signed_in_client().await;
    let (buyer, _) = system.signed_in_client().await;
    let ticket = post(
        &system,
        &seller,
        "/api/tickets",
        json!({ "title": "concert", "price": 5 }),
        "create",
    )
    .await;
    let ticket_id = ticket["id"].as_str().unwrap().to_owned();
    let order = post(
        &system,
        &buyer,
        "/api/orders",
        json!({ "ticketId": ticket_id }),
        "place",
    )
    .await;
    let sellers = endpoint(
        &system,
        &seller,
        &format!("/api/tickets/{ticket_id}/history"),
    )
    .await;

    let output = history(&system, &[&format!("ticket:{ticket_id}"), "--json"]);

    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let printed: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    let ids =
        |events: &[Value]| -> Vec<Value> { events.iter().map(|e| e["eventId"].clone()).collect() };
    assert_eq!(ids(&printed), ids(&sellers));
    assert_eq!(printed[0], sellers[0]);
    // The seller does not see whose reservation it was; the operator does.
    assert_eq!(sellers[1]["redacted"], true);
    assert_eq!(printed[1]["data"]["orderId"], order["id"]);
    assert_eq!(printed[1]["correlationId"], "place");
}

#[tokio::test]
async fn given_no_such_aggregate_or_a_bad_argument_when_history_runs_then_it_exits_1_or_2() {
    let system = start_system().await;

    let unknown = history(&system, &["order:0198c0de-0000-7000-8000-000000000000"]);
    let not_an_aggregate = history(&system, &["user:1"]);
    let bad_time = history(&system, &["order:1", "--as-of", "yesterday"]);

    assert_eq!(unknown.status.code(), Some(1), "{unknown:?}");
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("has no events"));
    assert_eq!(
        not_an_aggregate.status.code(),
        Some(2),
        "{not_an_aggregate:?}"
    );
    assert_eq!(bad_time.status.code(), Some(2), "{bad_time:?}");
    assert!(String::from_utf8_lossy(&bad_time.stderr).contains("RFC 3339"));
}
