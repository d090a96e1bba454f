//! The Kafka consumer: group membership, manual offsets, and the
//! statistics that lag is computed from.

use std::collections::HashMap;
use std::sync::Arc;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::TopicPartitionList;
use serde::Deserialize;
use ticketing_relay::client_config;

use crate::{ProjectionConfig, ProjectionError, ProjectionMetrics};

pub(crate) type ProjectionConsumer = StreamConsumer<ProjectionContext>;

/// Feeds rebalances and statistics into the metrics.
pub(crate) struct ProjectionContext {
    metrics: Arc<ProjectionMetrics>,
}

impl ClientContext for ProjectionContext {
    fn stats_raw(&self, statistics: &[u8]) {
        // Parsed loosely: only a few fields matter, and a broker that omits
        // some must not cost the whole report.
        let stats: Stats = match serde_json::from_slice(statistics) {
            Ok(stats) => stats,
            Err(error) => {
                tracing::debug!(%error, "unreadable librdkafka statistics");
                return;
            }
        };
        for (topic, topic_stats) in stats.topics {
            for p in topic_stats.partitions.into_values() {
                if p.partition < 0 || !p.desired {
                    continue;
                }
                let floor = if p.committed_offset >= 0 {
                    p.committed_offset
                } else {
                    p.lo_offset
                };
                let key = (topic.clone(), p.partition);
                self.metrics.observe_partition(key, p.hi_offset, floor);
            }
        }
    }
}

impl ConsumerContext for ProjectionContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(assignment) => {
                let partitions: Vec<(String, i32)> = assignment
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition()))
                    .collect();
                tracing::info!(partitions = ?partitions, "projection partitions assigned");
                self.metrics.set_assignment(&partitions);
            }
            Rebalance::Revoke(revoked) => {
                tracing::info!(
                    partitions = revoked.count(),
                    "projection partitions revoked"
                );
                self.metrics.set_assignment(&[]);
            }
            Rebalance::Error(error) => {
                tracing::warn!(error.message = %error, "projection rebalance failed");
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => {
                for element in offsets.elements() {
                    if let rdkafka::Offset::Offset(offset) = element.offset() {
                        self.metrics.record_confirmed_commit(
                            element.topic(),
                            element.partition(),
                            offset,
                        );
                    }
                }
            }
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            // Not fatal: the next commit covers these offsets, and a
            // re-delivery is a duplicate the views ignore.
            Err(error) => tracing::warn!(
                error.message = %error,
                partitions = offsets.count(),
                "offset commit failed"
            ),
        }
    }
}

/// Creates the consumer with manual offset storage and commits.
pub(crate) fn create(
    config: &ProjectionConfig,
    metrics: Arc<ProjectionMetrics>,
) -> Result<ProjectionConsumer, ProjectionError> {
    let millis = |duration: std::time::Duration| duration.as_millis().to_string();
    client_config(&config.brokers, &config.kafka_properties, |c| {
        c.set("group.id", &config.group_id)
            .set("client.id", "ticketing-projections")
            // Offsets are stored and committed only once the database
            // transaction holding the change committed.
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", millis(config.session_timeout))
            .set("heartbeat.interval.ms", millis(config.heartbeat_interval))
            .set("fetch.wait.max.ms", millis(config.fetch_wait_max))
            .set("statistics.interval.ms", millis(config.statistics_interval));
    })
    .create_with_context(ProjectionContext { metrics })
    .map_err(ProjectionError::Client)
}

#[derive(Debug, Deserialize)]
struct Stats {
    #[serde(default)]
    topics: HashMap<String, TopicStats>,
}

#[derive(Debug, Deserialize)]
struct TopicStats {
    #[serde(default)]
    partitions: HashMap<String, PartitionStats>,
}

#[derive(Debug, Deserialize)]
struct PartitionStats {
    partition: i32,
    #[serde(default)]
    desired: bool,
    #[serde(default = "unknown")]
    hi_offset: i64,
    #[serde(default = "unknown")]
    lo_offset: i64,
    #[serde(default = "unknown")]
    committed_offset: i64,
}

fn unknown() -> i64 {
    -1
}
