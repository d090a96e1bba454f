//! A fuzzed batch of ticket writes over HTTP: every one is answered 2xx or
//! 400 (never 5xx), titles holding control characters are refused, and once
//! the read side caught up, every ticket's view equals what the event store
//! holds: nothing the gateway accepted failed to project.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::start_system;

/// A title: arbitrary Unicode (control characters included), ordinary text
/// with a control character somewhere, or text around the length limit.
fn title() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        (
            "[a-zA-Z ]{1,12}",
            proptest::char::range('\u{0}', '\u{9f}'),
            "[a-z]{0,5}"
        )
            .prop_map(|(head, control, tail)| format!("{head}{control}{tail}")),
        "\\PC{190,210}",
        "[ -~]{0,20}",
    ]
}

/// A price: a cent amount, or any JSON number (NaN and the infinities are
/// sent as `null`).
fn price() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0_i64..2_000_000).prop_map(|cents| json!(cents as f64 / 100.0)),
        any::<f64>().prop_map(|price| json!(price)),
    ]
}

#[tokio::test]
async fn a_fuzzed_batch_of_writes_is_refused_or_stored_exactly() {
    let system = start_system().await;
    let (seller, _) = system.signed_in_client().await;
    let mut runner = TestRunner::deterministic();
    let writes = proptest::collection::vec((any::<bool>(), title(), price()), 200)
        .new_tree(&mut runner)
        .expect("generate the writes")
        .current();

    // Act: each write creates a ticket, or updates the newest one.
    let mut tickets: Vec<(String, String)> = Vec::new(); // (id, last token)
    let (mut accepted, mut refused) = (0, 0);
    for (create, title, price) in writes {
        let body = json!({ "title": title, "price": price });
        let (method, path) = match tickets.last() {
            Some((id, _)) if !create => (Method::PUT, format!("/api/tickets/{id}")),
            _ => (Method::POST, "/api/tickets".to_owned()),
        };
        let (status, answer, token) = system.command(&seller, method, &path, Some(body)).await;
        if status.is_success() {
            accepted += 1;
            assert!(
                !title.trim().contains(char::is_control),
                "{title:?} was accepted"
            );
            let id = answer["id"].as_str().expect("a ticket id").to_owned();
            match tickets.iter_mut().find(|(known, _)| *known == id) {
                Some(known) => known.1 = token,
                None => tickets.push((id, token)),
            }
        } else {
            refused += 1;
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{title:?} {price}: {answer}"
            );
            if title.trim().contains(char::is_control) && !title.trim().is_empty() {
                let message = answer["errors"][0]["message"].as_str().unwrap_or_default();
                assert!(
                    message.starts_with("Title must") || message.starts_with("Price"),
                    "{title:?}: {answer}"
                );
            }
        }
    }

    // Assert: each view, read after its last write, is the event store's.
    let pool = sqlx::PgPool::connect(system.database_url()).await.unwrap();
    for (id, token) in &tickets {
        let response = system
            .get_after(&seller, &format!("/api/tickets/{id}"), token)
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{id}");
        let view: Value = response.json().await.unwrap();
        let (sequence, payload): (i64, Value) = sqlx::query_as(
            "SELECT sequence, payload FROM events WHERE aggregate_id = $1 \
             AND event_type IN ('TicketCreated', 'TicketUpdated') ORDER BY sequence DESC LIMIT 1",
        )
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
        let stored = payload
            .as_object()
            .and_then(|event| event.values().next())
            .expect("an externally tagged event");
        assert_eq!(view["title"], stored["title"], "{id}");
        assert_eq!(
            (view["price"].as_f64().unwrap() * 100.0).round() as i64,
            stored["price_cents"].as_i64().unwrap(),
            "{id}"
        );
        assert_eq!(view["version"], json!(sequence - 1), "{id}");
    }
    println!(
        "fuzzed writes: {accepted} accepted, {refused} refused, {} tickets",
        tickets.len()
    );
    assert!(
        accepted > 0 && refused > 0,
        "the batch exercised both outcomes"
    );
    pool.close().await;
}
