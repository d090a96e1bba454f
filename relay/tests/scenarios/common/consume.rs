//! Reading the topics back with a real rdkafka consumer, and checking what a
//! deduplicating consumer would see.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use uuid::Uuid;

/// One message as consumed.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) partition: (String, i32),
    pub(crate) offset: i64,
    pub(crate) key: String,
    pub(crate) payload: Vec<u8>,
    pub(crate) envelope: serde_json::Value,
    pub(crate) headers: HashMap<String, String>,
}

impl Received {
    pub(crate) fn event_id(&self) -> anyhow::Result<Uuid> {
        let text = self.envelope["eventId"].as_str().context("no eventId")?;
        Ok(text.parse()?)
    }

    fn sequence(&self) -> anyhow::Result<u64> {
        self.envelope["sequence"].as_u64().context("no sequence")
    }
}

/// Reads every partition of `topics` from the beginning until at least
/// `expected` messages arrived and then nothing more for a second (so
/// duplicates would show), or until `limit`.
pub(crate) async fn read_all(
    brokers: &str,
    topics: &[&str],
    expected: usize,
    limit: Duration,
) -> anyhow::Result<Vec<Received>> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("test-{}", Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()?;
    // assign(), not subscribe(): no group join, so no rebalance delay.
    let mut assignment = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let partitions = metadata
            .topics()
            .first()
            .map_or(0, |t| t.partitions().len());
        anyhow::ensure!(partitions > 0, "topic {topic} does not exist");
        for partition in 0..i32::try_from(partitions)? {
            assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
        }
    }
    consumer.assign(&assignment)?;
    let deadline = tokio::time::Instant::now() + limit;
    let mut received = Vec::new();
    loop {
        let quiet = if received.len() >= expected {
            Duration::from_secs(1)
        } else {
            deadline.saturating_duration_since(tokio::time::Instant::now())
        };
        let Ok(message) = tokio::time::timeout(quiet, consumer.recv()).await else {
            return Ok(received);
        };
        let message = message?;
        let payload = message.payload().unwrap_or_default().to_vec();
        let headers = message.headers().map_or_else(HashMap::new, |headers| {
            headers
                .iter()
                .map(|h| {
                    let value = String::from_utf8_lossy(h.value.unwrap_or_default());
                    (h.key.to_owned(), value.into_owned())
                })
                .collect()
        });
        received.push(Received {
            partition: (message.topic().to_owned(), message.partition()),
            offset: message.offset(),
            key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
            envelope: serde_json::from_slice(&payload)?,
            payload,
            headers,
        });
    }
}

/// Checks `received` against the events that must have been published:
/// every one is there; re-sent copies are byte-identical; the key and the
/// `event-id` header match the envelope; and a consumer that drops event ids
/// it has seen gets each key's events in consecutive sequence order. Returns
/// the number of duplicates.
pub(crate) fn assert_consumer_view(
    received: &[Received],
    expected: &[(Uuid, String, i64)],
) -> anyhow::Result<usize> {
    let mut by_id: HashMap<Uuid, &Received> = HashMap::new();
    let mut duplicates = 0;
    for message in received {
        let id = message.event_id()?;
        anyhow::ensure!(
            message.key == message.envelope["aggregateId"],
            "key mismatch"
        );
        anyhow::ensure!(
            message.headers.get("event-id") == Some(&id.to_string()),
            "event-id header mismatch"
        );
        if let Some(first) = by_id.insert(id, message) {
            anyhow::ensure!(first.payload == message.payload, "re-sent {id} differs");
            duplicates += 1;
        }
    }
    let missing: Vec<_> = expected
        .iter()
        .filter(|(id, _, _)| !by_id.contains_key(id))
        .collect();
    anyhow::ensure!(
        missing.is_empty(),
        "{} of {} events missing, e.g. {:?}",
        missing.len(),
        expected.len(),
        missing.first()
    );
    let mut ordered: Vec<&Received> = received.iter().collect();
    ordered.sort_by(|a, b| (&a.partition, a.offset).cmp(&(&b.partition, b.offset)));
    let mut seen = HashSet::new();
    let mut last: BTreeMap<&str, u64> = BTreeMap::new();
    for message in ordered {
        if !seen.insert(message.event_id()?) {
            continue;
        }
        let sequence = message.sequence()?;
        if let Some(previous) = last.insert(&message.key, sequence) {
            anyhow::ensure!(
                sequence == previous + 1,
                "key {} went from {previous} to {sequence}",
                message.key
            );
        }
    }
    Ok(duplicates)
}
