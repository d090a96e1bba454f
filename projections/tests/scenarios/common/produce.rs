//! Envelopes written straight to the topics with a real producer, as the
//! relay would write them.

use std::time::Duration;

use chrono::Utc;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde::Serialize;
use ticketing_projections::ProjectionConfig;
use ticketing_relay::{provision_topics, RelayConfig};
use ticketing_schemas::{
    Envelope, OrderEventV1, OrderPlacedV1, OrderStatusV1, OrderTicketV1, TicketCreatedV1,
    TicketEventV1, WireEvent,
};
use uuid::Uuid;

pub(crate) struct Producer {
    producer: FutureProducer,
}

impl Producer {
    /// Creates the topics of `config` (as the relay would) and a producer.
    pub(crate) async fn new(config: &ProjectionConfig) -> anyhow::Result<Producer> {
        provision_topics(&RelayConfig {
            brokers: config.brokers.clone(),
            topics: config.topics.clone(),
            partitions: config.partitions,
            ..RelayConfig::default()
        })
        .await?;
        let producer = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create()?;
        Ok(Producer { producer })
    }

    /// Sends raw bytes with `key` and an `event-type` header, and returns
    /// where the broker put them.
    pub(crate) async fn send_raw(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
    ) -> anyhow::Result<(i32, i64)> {
        let headers = OwnedHeaders::new().insert(Header {
            key: "event-type",
            value: Some("whatever"),
        });
        let record = FutureRecord::to(topic)
            .key(key)
            .payload(payload)
            .headers(headers);
        let delivery = self
            .producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(error, _)| error)?;
        Ok((delivery.partition, delivery.offset))
    }

    /// Sends every envelope in order (concurrently, keyed: per-key order
    /// holds) and waits for all acknowledgements.
    pub(crate) async fn send_all<E: Serialize + WireEvent>(
        &self,
        topic: &str,
        envelopes: &[Envelope<E>],
    ) -> anyhow::Result<()> {
        let mut deliveries = Vec::with_capacity(envelopes.len());
        for envelope in envelopes {
            let payload = serde_json::to_vec(envelope)?;
            let record = FutureRecord::to(topic)
                .key(&envelope.aggregate_id)
                .payload(&payload);
            let delivery = self
                .producer
                .send_result(record)
                .map_err(|(error, _)| error)?;
            deliveries.push(delivery);
        }
        for delivery in futures::future::join_all(deliveries).await {
            let _ = delivery?.map_err(|(error, _)| error)?;
        }
        Ok(())
    }
}

/// An envelope as the relay builds it.
pub(crate) fn produce<E: WireEvent>(
    aggregate_id: &str,
    sequence: u64,
    global_position: u64,
    event: E,
) -> Envelope<E> {
    Envelope {
        event_id: Uuid::new_v4(),
        schema_version: event.schema_version().to_owned(),
        aggregate_type: E::AGGREGATE_TYPE.to_owned(),
        aggregate_id: aggregate_id.to_owned(),
        sequence,
        global_position,
        timestamp: Utc::now(),
        correlation_id: Some("corr".to_owned()),
        causation_id: Some("cause".to_owned()),
        event,
    }
}

pub(crate) fn ticket(title: &str, price_cents: i64, user_id: &str) -> TicketEventV1 {
    TicketEventV1::TicketCreated(TicketCreatedV1 {
        title: title.to_owned(),
        price_cents,
        user_id: user_id.to_owned(),
        currency: "usd".to_owned(),
    })
}

pub(crate) fn order_placed(
    user_id: &str,
    ticket_id: &str,
    title: &str,
    price_cents: i64,
) -> OrderEventV1 {
    OrderEventV1::OrderPlaced(OrderPlacedV1 {
        user_id: user_id.to_owned(),
        status: OrderStatusV1::Created,
        expires_at: Utc::now() + chrono::Duration::minutes(15),
        ticket: OrderTicketV1 {
            id: ticket_id.to_owned(),
            title: title.to_owned(),
            price_cents,
            version: 0,
        },
    })
}
