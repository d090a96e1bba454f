//! The dead-letter topics: a message that cannot be projected is parked on
//! `<topic>.dlq`, unchanged, with why and where it came from.

use std::time::Duration;

use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use ticketing_relay::{client_config, provision_topics, RelayConfig, Topics};

use crate::{ProjectionConfig, ProjectionError};

pub use ticketing_schemas::headers::dlq::{
    ERROR as HEADER_ERROR, ORIGIN_OFFSET as HEADER_ORIGIN_OFFSET,
    ORIGIN_PARTITION as HEADER_ORIGIN_PARTITION, ORIGIN_TOPIC as HEADER_ORIGIN_TOPIC,
};

/// Writes dead letters and waits for the broker to hold them, so that the
/// original's offset is committed only once its copy is safe.
pub(crate) struct DeadLetters {
    producer: FutureProducer,
}

impl DeadLetters {
    pub(crate) fn new(config: &ProjectionConfig) -> Result<Self, ProjectionError> {
        let producer = client_config(&config.brokers, &config.kafka_properties, |c| {
            c.set("enable.idempotence", "true")
                .set("acks", "all")
                .set("message.timeout.ms", "30000")
                .set("client.id", "ticketing-projections-dlq");
        })
        .create()
        .map_err(ProjectionError::Client)?;
        Ok(Self { producer })
    }

    /// Parks `message` on its topic's dead-letter topic with `error`'s
    /// cause chain.
    #[tracing::instrument(skip_all, fields(topic = message.topic(), partition = message.partition(), offset = message.offset()))]
    pub(crate) async fn send(
        &self,
        message: &OwnedMessage,
        error: &(dyn std::error::Error + Send + Sync),
    ) -> Result<(), ProjectionError> {
        let topic = ProjectionConfig::dead_letter_topic(message.topic());
        let chain = error_chain(error);
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let mut headers = OwnedHeaders::new();
        if let Some(original) = message.headers() {
            for header in original.iter() {
                headers = headers.insert(header);
            }
        }
        let extra = [
            (HEADER_ERROR, chain.as_str()),
            (HEADER_ORIGIN_TOPIC, message.topic()),
            (HEADER_ORIGIN_PARTITION, partition.as_str()),
            (HEADER_ORIGIN_OFFSET, offset.as_str()),
        ];
        for (key, value) in extra {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(&topic).headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        self.producer
            .send(record, Duration::from_secs(5))
            .await
            .map_err(|(source, _)| ProjectionError::DeadLetter {
                topic: message.topic().to_owned(),
                partition: message.partition(),
                offset: message.offset(),
                source,
            })?;
        tracing::warn!(error = %chain, dead_letter_topic = %topic, "message dead-lettered");
        Ok(())
    }
}

/// Creates the consumed topics (so the worker may start before the relay)
/// and their dead-letter topics, with the relay's settings.
pub(crate) async fn provision(config: &ProjectionConfig) -> Result<(), ProjectionError> {
    let relay = |topics: Topics| RelayConfig {
        brokers: config.brokers.clone(),
        kafka_properties: config.kafka_properties.clone(),
        topics,
        partitions: config.partitions,
        replication_factor: config.replication_factor,
        ..RelayConfig::default()
    };
    let dlq = Topics {
        tickets: ProjectionConfig::dead_letter_topic(&config.topics.tickets),
        orders: ProjectionConfig::dead_letter_topic(&config.topics.orders),
        payments: ProjectionConfig::dead_letter_topic(&config.topics.payments),
    };
    for topics in [config.topics.clone(), dlq] {
        provision_topics(&relay(topics))
            .await
            .map_err(ProjectionError::Provision)?;
    }
    Ok(())
}

/// `error: cause: cause…`, as one header value.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    chain
}
