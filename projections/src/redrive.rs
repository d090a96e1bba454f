//! The dead-letter topics read back, for `ticketing replay dlq`: listing
//! what was parked and why, and re-driving it to the topic it came from
//! once the cause is fixed.
//!
//! A re-drive sends each dead letter unchanged (key, payload, original
//! headers; the `dlq-*` ones dropped) to its origin topic and partition,
//! waits for the broker's acknowledgement, and commits its offset in the
//! consumer group `<group>`, so a re-drive stopped midway resumes after
//! what it sent, and what was re-driven once is not re-driven again.
//! Re-sending is safe anyway: projections deduplicate on their checkpoints.

use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use ticketing_relay::{client_config, KafkaProperties};
use tokio_util::sync::CancellationToken;

use crate::dead_letter::{
    HEADER_ERROR, HEADER_ORIGIN_OFFSET, HEADER_ORIGIN_PARTITION, HEADER_ORIGIN_TOPIC,
};
use crate::DLQ_SUFFIX;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Why the dead letters could not be read or re-driven.
#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    #[error("Kafka request failed on {topic}")]
    Kafka {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("topic {0} does not exist")]
    NoSuchTopic(String),
}

/// One parked message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    /// `event-type` and `event-id` headers, if the relay set them.
    pub event_type: Option<String>,
    pub event_id: Option<String>,
    /// Why it was parked (the error's cause chain).
    pub error: Option<String>,
    /// Where it came from: `topic/partition@offset`.
    pub origin: Option<String>,
    /// The topic a re-drive sends it to.
    pub redrive_topic: String,
    /// The partition it came from, where a re-drive puts it back: the
    /// same as its key's earlier events whatever partitioner wrote them.
    pub redrive_partition: Option<i32>,
}

/// Dead letters of one DLQ topic, read from a consumer group's committed
/// offsets (or the beginning) up to the end as of now.
pub struct DeadLetterQueue {
    brokers: String,
    kafka_properties: KafkaProperties,
    topic: String,
    group_id: String,
}

/// How a re-drive ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedriveOutcome {
    Finished { redriven: u64 },
    Interrupted { redriven: u64 },
}

impl DeadLetterQueue {
    /// The DLQ topic `topic` (`<origin>.dlq`); `group_id` records what was
    /// re-driven.
    pub fn new(
        brokers: &str,
        kafka_properties: &KafkaProperties,
        topic: &str,
        group_id: &str,
    ) -> Self {
        Self {
            brokers: brokers.to_owned(),
            kafka_properties: kafka_properties.clone(),
            topic: topic.to_owned(),
            group_id: group_id.to_owned(),
        }
    }

    fn kafka(&self, source: KafkaError) -> RedriveError {
        RedriveError::Kafka {
            topic: self.topic.clone(),
            source,
        }
    }

    fn consumer(&self) -> Result<StreamConsumer, RedriveError> {
        client_config(&self.brokers, &self.kafka_properties, |c| {
            c.set("group.id", &self.group_id)
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .set("auto.offset.reset", "earliest");
        })
        .create()
        .map_err(|e| self.kafka(e))
    }

    /// Assigns every partition from its committed offset (or the
    /// beginning); returns the partitions with messages left and the end
    /// offset of each, as of now.
    fn assign(&self, consumer: &StreamConsumer) -> Result<Vec<(i32, i64, i64)>, RedriveError> {
        let metadata = consumer
            .fetch_metadata(Some(&self.topic), TIMEOUT)
            .map_err(|e| self.kafka(e))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == self.topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(RedriveError::NoSuchTopic(self.topic.clone()));
        }
        let mut wanted = TopicPartitionList::new();
        for partition in &partitions {
            wanted.add_partition(&self.topic, *partition);
        }
        let committed = consumer
            .committed_offsets(wanted, TIMEOUT)
            .map_err(|e| self.kafka(e))?;
        let mut assignment = TopicPartitionList::new();
        let mut pending = Vec::new();
        for partition in partitions {
            let (low, high) = consumer
                .fetch_watermarks(&self.topic, partition, TIMEOUT)
                .map_err(|e| self.kafka(e))?;
            let start = committed
                .find_partition(&self.topic, partition)
                .and_then(|p| match p.offset() {
                    Offset::Offset(offset) => Some(offset),
                    _ => None,
                })
                .unwrap_or(low)
                .max(low);
            if start < high {
                pending.push((partition, start, high));
                assignment
                    .add_partition_offset(&self.topic, partition, Offset::Offset(start))
                    .map_err(|e| self.kafka(e))?;
            }
        }
        consumer.assign(&assignment).map_err(|e| self.kafka(e))?;
        Ok(pending)
    }

    /// Every dead letter not yet re-driven, oldest first per partition.
    pub async fn list(&self) -> Result<Vec<DeadLetter>, RedriveError> {
        let consumer = self.consumer()?;
        let pending = self.assign(&consumer)?;
        let mut letters = Vec::new();
        let mut left: i64 = pending.iter().map(|(_, start, end)| end - start).sum();
        while left > 0 {
            let message = consumer.recv().await.map_err(|e| self.kafka(e))?;
            let end = pending
                .iter()
                .find(|(p, ..)| *p == message.partition())
                .map_or(0, |(.., end)| *end);
            if message.offset() < end {
                letters.push(self.describe(&message.detach()));
                left -= 1;
            }
        }
        letters.sort_by_key(|l| (l.partition, l.offset));
        Ok(letters)
    }

    /// Sends every dead letter not yet re-driven back to its origin topic,
    /// committing as it goes; `progress` gets the count so far.
    pub async fn redrive(
        &self,
        stop: &CancellationToken,
        mut progress: impl FnMut(u64),
    ) -> Result<RedriveOutcome, RedriveError> {
        let consumer = self.consumer()?;
        let pending = self.assign(&consumer)?;
        let producer: FutureProducer = client_config(&self.brokers, &self.kafka_properties, |c| {
            c.set("enable.idempotence", "true")
                .set("acks", "all")
                .set("client.id", "ticketing-dlq-redrive");
        })
        .create()
        .map_err(|e| self.kafka(e))?;
        let mut left: i64 = pending.iter().map(|(_, start, end)| end - start).sum();
        let mut redriven = 0;
        while left > 0 {
            if stop.is_cancelled() {
                return Ok(RedriveOutcome::Interrupted { redriven });
            }
            let message = consumer.recv().await.map_err(|e| self.kafka(e))?.detach();
            let end = pending
                .iter()
                .find(|(p, ..)| *p == message.partition())
                .map_or(0, |(.., end)| *end);
            if message.offset() >= end {
                continue;
            }
            let letter = self.describe(&message);
            let mut record = FutureRecord::<[u8], [u8]>::to(&letter.redrive_topic)
                .headers(original_headers(&message));
            if let Some(partition) = letter.redrive_partition {
                record = record.partition(partition);
            }
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            if let Some(payload) = message.payload() {
                record = record.payload(payload);
            }
            let _ = producer
                .send(record, TIMEOUT)
                .await
                .map_err(|(source, _)| RedriveError::Kafka {
                    topic: letter.redrive_topic.clone(),
                    source,
                })?;
            let mut done = TopicPartitionList::new();
            done.add_partition_offset(
                &self.topic,
                message.partition(),
                Offset::Offset(message.offset() + 1),
            )
            .map_err(|e| self.kafka(e))?;
            consumer
                .commit(&done, CommitMode::Sync)
                .map_err(|e| self.kafka(e))?;
            redriven += 1;
            left -= 1;
            progress(redriven);
        }
        Ok(RedriveOutcome::Finished { redriven })
    }

    fn describe(&self, message: &OwnedMessage) -> DeadLetter {
        let header = |name: &str| -> Option<String> {
            message.headers().and_then(|headers| {
                headers
                    .iter()
                    .filter(|h| h.key == name)
                    .last()
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            })
        };
        let origin_topic = header(HEADER_ORIGIN_TOPIC);
        let redrive_partition = origin_topic
            .as_ref()
            .and(header(HEADER_ORIGIN_PARTITION))
            .and_then(|p| p.parse().ok());
        let origin = origin_topic.as_ref().map(|topic| {
            format!(
                "{topic}/{}@{}",
                header(HEADER_ORIGIN_PARTITION).unwrap_or_default(),
                header(HEADER_ORIGIN_OFFSET).unwrap_or_default()
            )
        });
        let redrive_topic = origin_topic.unwrap_or_else(|| {
            self.topic
                .strip_suffix(DLQ_SUFFIX)
                .unwrap_or(&self.topic)
                .to_owned()
        });
        DeadLetter {
            partition: message.partition(),
            offset: message.offset(),
            key: message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            event_type: header(ticketing_schemas::headers::EVENT_TYPE),
            event_id: header(ticketing_schemas::headers::EVENT_ID),
            error: header(HEADER_ERROR),
            origin,
            redrive_topic,
            redrive_partition,
        }
    }
}

/// The headers the message had before it was dead-lettered.
fn original_headers(message: &OwnedMessage) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new();
    if let Some(original) = message.headers() {
        for header in original.iter().filter(|h| !h.key.starts_with("dlq-")) {
            headers = headers.insert(Header {
                key: header.key,
                value: header.value,
            });
        }
    }
    headers
}
