//! Every event type lands in its view.

use std::time::Duration;

use serde_json::{json, Value};

use ticketing_schemas::{
    OrderCancelledV1, OrderCompletedV1, OrderEventV1, OrderExpiredV1, PaymentEventV1,
    PaymentFailedV1, PaymentRequestedV1, PaymentSucceededV1, TicketEventV1, TicketReleasedV1,
    TicketReservedV1, TicketUpdatedV1,
};

use crate::common::{
    self, eventually, order_placed, produce, ticket, Producer, RunningProjector, TestDb, TestResult,
};

fn reserved(order_id: &str) -> TicketEventV1 {
    TicketEventV1::TicketReserved(TicketReservedV1 {
        order_id: order_id.to_owned(),
        expires_at: chrono::Utc::now(),
    })
}

fn released(order_id: &str) -> TicketEventV1 {
    TicketEventV1::TicketReleased(TicketReleasedV1 {
        order_id: order_id.to_owned(),
    })
}

fn requested(order_id: &str) -> PaymentEventV1 {
    PaymentEventV1::PaymentRequested(PaymentRequestedV1 {
        order_id: order_id.to_owned(),
        user_id: "buyer".to_owned(),
        amount_cents: 2500,
        currency: "usd".to_owned(),
    })
}

#[tokio::test]
async fn every_event_type_lands_in_its_view() -> TestResult {
    let db = TestDb::create().await?;
    let config = common::config();
    let producer = Producer::new(&config).await?;
    let updated = TicketEventV1::TicketUpdated(TicketUpdatedV1 {
        title: "Opera, row 2".to_owned(),
        price_cents: 3000,
    });
    let tickets = vec![
        produce("t-reserved", 1, 1, ticket("Opera", 2500, "seller")),
        produce("t-reserved", 2, 2, updated),
        produce("t-reserved", 3, 3, reserved("o-1")),
        produce("t-released", 1, 4, ticket("Jazz", 1000, "seller")),
        produce("t-released", 2, 5, reserved("o-2")),
        produce("t-released", 3, 6, released("o-2")),
        produce("t-kept", 1, 7, ticket("Rock", 1500, "seller")),
        produce("t-kept", 2, 8, reserved("o-3")),
        produce("t-kept", 3, 9, released("o-other")),
    ];
    let orders = vec![
        produce(
            "o-1",
            1,
            20,
            order_placed("buyer", "t-reserved", "Opera, row 2", 3000),
        ),
        produce(
            "o-2",
            1,
            10,
            order_placed("buyer", "t-released", "Jazz", 1000),
        ),
        produce(
            "o-2",
            2,
            11,
            OrderEventV1::OrderCancelled(OrderCancelledV1 {
                ticket_id: "t-released".to_owned(),
            }),
        ),
        produce("o-3", 1, 12, order_placed("other", "t-kept", "Rock", 1500)),
        produce(
            "o-3",
            2,
            13,
            OrderEventV1::OrderExpired(OrderExpiredV1 {
                ticket_id: "t-kept".to_owned(),
            }),
        ),
        produce("o-4", 1, 14, order_placed("buyer", "t-x", "Pop", 2500)),
        produce(
            "o-4",
            2,
            15,
            OrderEventV1::OrderCompleted(OrderCompletedV1 {
                payment_id: "p-1".to_owned(),
            }),
        ),
    ];
    let payments = vec![
        produce("p-1", 1, 16, requested("o-4")),
        produce(
            "p-1",
            2,
            17,
            PaymentEventV1::PaymentSucceeded(PaymentSucceededV1 {
                stripe_id: "ch_1".to_owned(),
            }),
        ),
        produce("p-2", 1, 18, requested("o-9")),
        produce(
            "p-2",
            2,
            19,
            PaymentEventV1::PaymentFailed(PaymentFailedV1 {
                reason: "card declined".to_owned(),
            }),
        ),
        produce("p-3", 1, 21, requested("o-8")),
    ];
    producer.send_all(&config.topics.tickets, &tickets).await?;
    producer.send_all(&config.topics.orders, &orders).await?;
    producer
        .send_all(&config.topics.payments, &payments)
        .await?;

    let worker = RunningProjector::spawn(&db.pool, &config)?;
    eventually(Duration::from_secs(30), || async {
        Ok(db.applied_events().await? == 21)
    })
    .await?;
    worker.stop().await?;

    let row = |id: &str, title: &str, price: i64, order: Option<&str>| {
        json!({"id": id, "title": title, "price_cents": price, "user_id": "seller",
               "order_id": order, "version": 2, "last_sequence": 3})
    };
    assert_eq!(
        rows(&db, "ticket_views", "id").await?,
        vec![
            row("t-kept", "Rock", 1500, Some("o-3")),
            row("t-released", "Jazz", 1000, None),
            row("t-reserved", "Opera, row 2", 3000, Some("o-1")),
        ]
    );
    let available: Vec<String> =
        sqlx::query_scalar("SELECT id FROM ticket_views WHERE order_id IS NULL")
            .fetch_all(&db.pool)
            .await?;
    assert_eq!(available, vec!["t-released".to_owned()]);

    let orders: Vec<Value> = rows(&db, "order_views", "user_id, placed_position")
        .await?
        .into_iter()
        .map(|mut order| {
            // Set by the producer's clock; checked for presence only.
            assert!(order["expires_at"].is_string());
            let _ = order.as_object_mut().unwrap().remove("expires_at");
            order
        })
        .collect();
    let order = |id: &str,
                 user: &str,
                 status: &str,
                 ticket: (&str, &str, i64),
                 payment: Option<&str>,
                 sequence: i64,
                 position: i64| {
        json!({"id": id, "user_id": user, "status": status, "ticket_id": ticket.0,
               "ticket_title": ticket.1, "ticket_price_cents": ticket.2, "ticket_version": 0,
               "payment_id": payment, "version": sequence - 1, "last_sequence": sequence,
               "placed_position": position})
    };
    assert_eq!(
        orders,
        vec![
            order(
                "o-2",
                "buyer",
                "cancelled",
                ("t-released", "Jazz", 1000),
                None,
                2,
                10
            ),
            order(
                "o-4",
                "buyer",
                "complete",
                ("t-x", "Pop", 2500),
                Some("p-1"),
                2,
                14
            ),
            order(
                "o-1",
                "buyer",
                "created",
                ("t-reserved", "Opera, row 2", 3000),
                None,
                1,
                20
            ),
            order(
                "o-3",
                "other",
                "cancelled",
                ("t-kept", "Rock", 1500),
                None,
                2,
                12
            ),
        ]
    );

    let payment = |id: &str,
                   order: &str,
                   status: &str,
                   stripe: Option<&str>,
                   reason: Option<&str>,
                   sequence: i64| {
        json!({"id": id, "order_id": order, "user_id": "buyer", "amount_cents": 2500,
               "currency": "usd", "status": status, "stripe_id": stripe,
               "failure_reason": reason, "version": sequence - 1, "last_sequence": sequence})
    };
    assert_eq!(
        rows(&db, "payment_views", "id").await?,
        vec![
            payment("p-1", "o-4", "succeeded", Some("ch_1"), None, 2),
            payment("p-2", "o-9", "failed", None, Some("card declined"), 2),
            payment("p-3", "o-8", "pending", None, None, 1),
        ]
    );
    db.drop().await
}

/// Every row of `table` as JSON, without `updated_at`.
async fn rows(db: &TestDb, table: &str, order_by: &str) -> anyhow::Result<Vec<Value>> {
    let sql = format!("SELECT to_jsonb(t) - 'updated_at' FROM {table} t ORDER BY {order_by}");
    Ok(sqlx::query_scalar(&sql).fetch_all(&db.pool).await?)
}
