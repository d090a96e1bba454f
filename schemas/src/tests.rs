#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use chrono::{DateTime, TimeZone, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::*;

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap()
}

fn envelope<E: WireEvent>(event: E) -> Envelope<E> {
    Envelope {
        event_id: Uuid::from_u128(0x0b7f_7c46_3f4e_4a57_9d0e_5d6f_8a1f_2b3c),
        schema_version: event.schema_version().to_owned(),
        aggregate_type: E::AGGREGATE_TYPE.to_owned(),
        aggregate_id: "agg-1".to_owned(),
        sequence: 3,
        global_position: 42,
        timestamp: at(),
        correlation_id: Some("req-1".to_owned()),
        causation_id: None,
        event,
    }
}

fn round_trips<E>(event: E)
where
    E: WireEvent + Serialize + DeserializeOwned + PartialEq + std::fmt::Debug + Clone,
{
    let original = envelope(event);
    let text = serde_json::to_string(&original).unwrap();
    let decoded: Envelope<E> = serde_json::from_str(&text).unwrap();
    assert_eq!(decoded, original, "{text}");
}

#[test]
fn every_event_survives_a_json_round_trip() {
    round_trips(TicketEventV1::TicketCreated(TicketCreatedV1 {
        title: "Concert".into(),
        price_cents: 1999,
        user_id: "u-1".into(),
        currency: "usd".to_owned(),
    }));
    round_trips(TicketEventV1::TicketUpdated(TicketUpdatedV1::default()));
    round_trips(TicketEventV1::TicketReserved(TicketReservedV1 {
        order_id: "o-1".into(),
        expires_at: at(),
    }));
    round_trips(TicketEventV1::TicketReleased(TicketReleasedV1::default()));
    round_trips(OrderEventV1::OrderPlaced(OrderPlacedV1 {
        user_id: "u-2".into(),
        status: OrderStatusV1::Created,
        expires_at: at(),
        ticket: OrderTicketV1 {
            id: "t-1".into(),
            title: "Concert".into(),
            price_cents: 1999,
            version: 2,
        },
    }));
    round_trips(OrderEventV1::OrderCancelled(OrderCancelledV1::default()));
    round_trips(OrderEventV1::OrderExpired(OrderExpiredV1::default()));
    round_trips(OrderEventV1::OrderCompleted(OrderCompletedV1::default()));
    round_trips(PaymentEventV1::PaymentRequested(
        PaymentRequestedV1::default(),
    ));
    round_trips(PaymentEventV1::PaymentSucceeded(
        PaymentSucceededV1::default(),
    ));
    round_trips(PaymentEventV1::PaymentFailed(PaymentFailedV1::default()));
}

#[test]
fn an_envelope_is_one_flat_camel_case_object() {
    let event = OrderEventV1::OrderPlaced(OrderPlacedV1 {
        user_id: "u-2".into(),
        status: OrderStatusV1::Created,
        expires_at: at(),
        ticket: OrderTicketV1 {
            id: "t-1".into(),
            title: "Concert".into(),
            price_cents: 1999,
            version: 0,
        },
    });

    let value = serde_json::to_value(envelope(event)).unwrap();

    assert_eq!(
        value,
        json!({
            "eventId": "0b7f7c46-3f4e-4a57-9d0e-5d6f8a1f2b3c",
            "schemaVersion": "1.0.0",
            "aggregateType": "Order",
            "aggregateId": "agg-1",
            "sequence": 3,
            "globalPosition": 42,
            "timestamp": "2026-11-21T10:00:00Z",
            "correlationId": "req-1",
            "causationId": null,
            "eventType": "OrderPlaced",
            "data": {
                "userId": "u-2",
                "status": "created",
                "expiresAt": "2026-11-21T10:00:00Z",
                "ticket": { "id": "t-1", "title": "Concert", "priceCents": 1999, "version": 0 }
            }
        })
    );
}

#[test]
fn an_unknown_event_type_is_rejected() {
    let mut value = serde_json::to_value(envelope(PaymentEventV1::PaymentFailed(
        PaymentFailedV1::default(),
    )))
    .unwrap();
    value["eventType"] = json!("PaymentRefunded");

    let decoded = serde_json::from_value::<Envelope<PaymentEventV1>>(value);

    assert!(decoded.is_err());
}

#[test]
fn the_json_schema_describes_the_flattened_envelope() {
    let schema = serde_json::to_value(schemars::schema_for!(Envelope<TicketEventV1>)).unwrap();
    let text = schema.to_string();

    for field in [
        "eventId",
        "globalPosition",
        "eventType",
        "data",
        "priceCents",
    ] {
        assert!(text.contains(field), "{field} missing from {text}");
    }
}
