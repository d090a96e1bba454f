//! The Kafka side: an idempotent producer and topic provisioning.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use futures::future::join_all;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use ticketing_eventstore::trace_context;
use tracing::Span;

use crate::encode::OutgoingMessage;
use crate::{client_config, RelayConfig, RelayError};

/// Sends batches and waits for every acknowledgement.
pub struct Publisher {
    producer: FutureProducer,
    config: RelayConfig,
    /// The highest offset acknowledged per partition, to notice a topic
    /// that the broker lost and started again from 0.
    acknowledged: Mutex<HashMap<(String, i32), i64>>,
}

impl Publisher {
    /// Creates the producer; it connects lazily, so this works with the
    /// broker down.
    pub fn new(config: &RelayConfig) -> Result<Self, RelayError> {
        Ok(Self {
            producer: producer(config)?,
            config: config.clone(),
            acknowledged: Mutex::new(HashMap::new()),
        })
    }

    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    /// Replaces the producer with a fresh one. After a failed batch the old
    /// one may be unusable (an idempotent producer's fatal error, or
    /// sequence numbers a restarted broker no longer knows); nothing is in
    /// flight then, since every send of the batch has completed.
    pub fn reset(&mut self) -> Result<(), RelayError> {
        self.producer = producer(&self.config)?;
        Ok(())
    }

    /// Loads the topics' metadata, so that the first batch does not wait
    /// for partition leaders to be looked up (up to a second otherwise).
    pub async fn warm_up(&self) -> Result<(), RelayError> {
        let producer = self.producer.clone();
        let topics = self.config.topics.clone();
        let fetched = tokio::task::spawn_blocking(move || {
            topics.all().into_iter().try_for_each(|topic| {
                producer
                    .client()
                    .fetch_metadata(Some(topic), Duration::from_secs(10))
                    .map(drop)
            })
        })
        .await;
        match fetched {
            Ok(result) => result.map_err(RelayError::Client),
            // The closure does not panic; a cancelled runtime is shutting down.
            Err(_) => Ok(()),
        }
    }

    /// Sends every message at once, in order, and succeeds only if the
    /// broker acknowledged all of them.
    ///
    /// Each message is sent in a `relay.publish` span, a child of the span
    /// of the command that wrote the event (its stored `traceparent`), and
    /// carries that span's context as its `traceparent` header, so that
    /// consumers continue the command's trace. The span ends once the
    /// broker acknowledged the whole batch.
    #[tracing::instrument(level = "debug", skip_all, fields(messages = messages.len()))]
    pub(crate) async fn publish_all(&self, messages: &[OutgoingMessage]) -> Result<(), RelayError> {
        let mut deliveries = Vec::with_capacity(messages.len());
        let mut spans = Vec::with_capacity(messages.len());
        for message in messages {
            let span = publish_span(message);
            let traceparent =
                trace_context::traceparent_of(&span).or_else(|| message.traceparent.clone());
            let headers = message
                .headers
                .iter()
                .map(|(key, value)| (*key, value.as_str()))
                .chain(
                    traceparent
                        .as_deref()
                        .map(|value| (ticketing_schemas::headers::TRACEPARENT, value)),
                )
                .fold(OwnedHeaders::new(), |headers, (key, value)| {
                    headers.insert(Header {
                        key,
                        value: Some(value),
                    })
                });
            let record = FutureRecord::to(&message.topic)
                .key(&message.key)
                .payload(&message.payload)
                .headers(headers);
            spans.push(span);
            // The queue holds far more than a batch; a full queue is a
            // failed batch like any other and is retried.
            match self.producer.send_result(record) {
                Ok(delivery) => deliveries.push(delivery),
                Err((source, _)) => {
                    return Err(RelayError::Delivery {
                        failed: messages.len() - deliveries.len(),
                        total: messages.len(),
                        source,
                    })
                }
            }
        }
        let mut first_error = None;
        let mut failed = 0;
        let mut acknowledged = Vec::with_capacity(messages.len());
        for (outcome, message) in join_all(deliveries).await.into_iter().zip(messages) {
            let error = match outcome {
                Ok(Ok(at)) => {
                    acknowledged.push((message.topic.as_str(), (at.partition, at.offset)));
                    continue;
                }
                Ok(Err((error, _))) => error,
                Err(_cancelled) => KafkaError::Canceled,
            };
            failed += 1;
            first_error.get_or_insert(error);
        }
        if let Some(error) = &first_error {
            for span in &spans {
                span.record("otel.status_code", "ERROR");
                span.record("error.message", tracing::field::display(error));
            }
        }
        drop(spans);
        let _ = self.watch_offsets(&acknowledged);
        match first_error {
            None => Ok(()),
            Some(source) => Err(RelayError::Delivery {
                failed,
                total: messages.len(),
                source,
            }),
        }
    }
}

impl Publisher {
    /// Notices a partition whose acknowledged offsets went backwards: the
    /// broker lost the topic (a restart without durable storage, a topic
    /// deleted and recreated, an unclean leader election) and everything
    /// published there before is gone.
    ///
    /// The relay does not republish on its own (see the guarantees in
    /// `docs/read-side.md`): the read side heals from the event store,
    /// which it follows behind the relay, and other consumers of the topics
    /// are told, by this log line, the `relay_topic_resets_total` counter
    /// and its alert, to reconcile (or an operator republishes with
    /// `ticketing replay republish`). Republishing automatically would
    /// flood every consumer with the whole history on each such event.
    /// Returns how many partitions were seen reset.
    fn watch_offsets(&self, acknowledged: &[(&str, (i32, i64))]) -> usize {
        let mut resets = 0;
        let mut highest = self
            .acknowledged
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for &(topic, (partition, offset)) in acknowledged {
            let key = (topic.to_owned(), partition);
            match highest.get_mut(&key) {
                Some(seen) if offset < *seen => {
                    tracing::error!(
                        topic,
                        partition,
                        offset,
                        previously_acknowledged = *seen,
                        "the broker acknowledged an offset below one it acknowledged before: \
                         the topic was lost and recreated; what was published there before is gone"
                    );
                    crate::metrics::record_topic_reset(topic);
                    resets += 1;
                    *seen = offset;
                }
                Some(seen) => *seen = offset.max(*seen),
                None => {
                    let _ = highest.insert(key, offset);
                }
            }
        }
        resets
    }
}

/// The span of one message's publication, in its command's trace.
fn publish_span(message: &OutgoingMessage) -> Span {
    let span = tracing::info_span!(
        "relay.publish",
        otel.name = %format_args!("{} publish", message.topic),
        otel.kind = "producer",
        otel.status_code = tracing::field::Empty,
        error.message = tracing::field::Empty,
        messaging.system = "kafka",
        messaging.operation.type = "send",
        messaging.destination.name = %message.topic,
        messaging.kafka.message.key = %message.key,
    );
    trace_context::child_of(span, message.traceparent.as_deref())
}

fn producer(config: &RelayConfig) -> Result<FutureProducer, RelayError> {
    client_config(&config.brokers, &config.kafka_properties, |c| {
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            // A batch is enqueued at once, so it fills requests without
            // lingering; a millisecond still groups a trickle of single events
            // without adding to their latency.
            .set("linger.ms", "1")
            // Nagle's algorithm holds small produce requests back for the
            // peer's delayed ACK (tens of ms on Linux), per batch.
            .set("socket.nagle.disable", "true")
            .set("compression.codec", "lz4")
            .set(
                "message.timeout.ms",
                config.message_timeout.as_millis().to_string(),
            )
            .set("client.id", "ticketing-relay");
    })
    .create()
    .map_err(RelayError::Client)
}

/// Creates the topics the relay writes to, if missing, with the configured
/// partitions and replication. The broker's auto-creation is never relied
/// upon: it would pick its own defaults.
#[tracing::instrument(skip_all, fields(brokers = %config.brokers))]
pub async fn provision_topics(config: &RelayConfig) -> Result<(), RelayError> {
    let admin: AdminClient<DefaultClientContext> =
        client_config(&config.brokers, &config.kafka_properties, |_| {})
            .create()
            .map_err(RelayError::Client)?;
    let names = config.topics.all();
    let new_topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|name| {
            NewTopic::new(
                name,
                config.partitions,
                TopicReplication::Fixed(config.replication_factor),
            )
        })
        .collect();
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(|source| RelayError::Provision {
            topic: names.join(","),
            source,
        })?;
    for result in results {
        match result {
            Ok(topic) => tracing::info!(topic, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(RelayError::Provision {
                    topic,
                    source: KafkaError::AdminOp(code),
                })
            }
        }
    }
    Ok(())
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("brokers", &self.config.brokers)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledged_offsets_going_backwards_are_a_reset_of_that_partition_only() {
        let publisher = Publisher::new(&RelayConfig::default()).expect("a lazy producer");
        assert_eq!(publisher.watch_offsets(&[("t", (0, 10)), ("t", (1, 5))]), 0);
        assert_eq!(publisher.watch_offsets(&[("t", (0, 11)), ("t", (1, 6))]), 0);
        // Partition 0 of `t` starts again from 0; partition 1 goes on.
        assert_eq!(publisher.watch_offsets(&[("t", (0, 0)), ("t", (1, 7))]), 1);
        assert_eq!(publisher.watch_offsets(&[("t", (0, 1)), ("u", (0, 0))]), 0);
    }
}
