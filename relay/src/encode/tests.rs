#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use chrono::{TimeZone, Utc};
use serde_json::json;
use uuid::Uuid;

use super::encode;
use crate::outbox::StoredEvent;
use crate::{RelayError, Topics};

fn stored(aggregate_type: &str, payload: serde_json::Value) -> StoredEvent {
    StoredEvent {
        aggregate_type: aggregate_type.to_owned(),
        aggregate_id: "agg-7".to_owned(),
        sequence: 2,
        event_type: "whatever".to_owned(),
        event_version: "1.0".to_owned(),
        payload,
        metadata: json!({ "correlation_id": "corr", "causation_id": "", "user_id": "u" }),
        global_position: 11,
        event_id: Uuid::from_u128(7),
        recorded_at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
        transaction_id: 900,
    }
}

fn body(message: &super::OutgoingMessage) -> serde_json::Value {
    serde_json::from_slice(&message.payload).unwrap()
}

#[test]
fn each_aggregate_goes_to_its_topic_keyed_by_aggregate_id() {
    let topics = Topics::default();
    let cases = [
        (
            "Ticket",
            json!({"TicketReleased": {"order_id": "o"}}),
            &topics.tickets,
        ),
        (
            "Order",
            json!({"OrderCompleted": {"payment_id": "p"}}),
            &topics.orders,
        ),
        (
            "Payment",
            json!({"PaymentFailed": {"reason": "declined"}}),
            &topics.payments,
        ),
    ];
    for (aggregate_type, payload, topic) in cases {
        let message = encode(&stored(aggregate_type, payload), &topics).unwrap();

        assert_eq!(&message.topic, topic);
        assert_eq!(message.key, "agg-7");
        assert_eq!(message.cursor.transaction_id, 900);
        assert_eq!(message.cursor.global_position, 11);
    }
}

#[test]
fn an_order_placed_becomes_the_wire_payload_with_its_status() {
    let payload = json!({"OrderPlaced": {
        "user_id": "buyer",
        "ticket": {"id": "t-1", "title": "Concert", "price_cents": 1999, "version": 3},
        "expires_at": "2026-01-02T03:19:05Z"
    }});

    let message = encode(&stored("Order", payload), &Topics::default()).unwrap();

    assert_eq!(
        body(&message)["data"],
        json!({
            "userId": "buyer",
            "status": "created",
            "expiresAt": "2026-01-02T03:19:05Z",
            "ticket": {"id": "t-1", "title": "Concert", "priceCents": 1999, "version": 3}
        })
    );
    assert_eq!(body(&message)["eventType"], "OrderPlaced");
}

#[test]
fn empty_metadata_becomes_null_and_absent_headers() {
    let payload = json!({"PaymentRequested": {
        "order_id": "o", "user_id": "u", "amount_cents": 500, "currency": "usd"
    }});

    let message = encode(&stored("Payment", payload), &Topics::default()).unwrap();

    let body = body(&message);
    assert_eq!(body["correlationId"], "corr");
    assert_eq!(body["causationId"], serde_json::Value::Null);
    assert_eq!(body["data"]["amountCents"], 500);
    let names: Vec<_> = message.headers.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        names,
        ["event-type", "schema-version", "event-id", "correlation-id"]
    );
}

#[test]
fn an_event_the_relay_does_not_know_stops_it_instead_of_being_skipped() {
    let unknown_type = encode(&stored("Refund", json!({})), &Topics::default());
    let unknown_event = encode(
        &stored("Ticket", json!({"TicketBurned": {}})),
        &Topics::default(),
    );

    assert!(matches!(
        unknown_type,
        Err(RelayError::UnknownAggregateType { .. })
    ));
    assert!(matches!(unknown_event, Err(RelayError::Convert { .. })));
}

/// Stored before tickets had a currency: published in the current shape,
/// through the same upcasters the aggregate loads with.
#[test]
fn a_ticket_created_at_event_version_1_0_publishes_as_1_1_0_with_usd() {
    let mut event = stored(
        "Ticket",
        json!({"TicketCreated": {"title": "Old", "price_cents": 500, "user_id": "u"}}),
    );
    event.event_type = "TicketCreated".to_owned();

    let message = encode(&event, &Topics::default()).unwrap();

    let body = body(&message);
    assert_eq!(body["schemaVersion"], "1.1.0");
    assert_eq!(body["data"]["currency"], "usd");
    assert_eq!(body["data"]["priceCents"], 500);
}
