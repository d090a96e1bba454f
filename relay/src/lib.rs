//! The outbox relay: every event committed to the event store, published to
//! its versioned Kafka topic, none lost, none reordered per aggregate.
//!
//! # The events table is the outbox
//!
//! postgres-es writes the events of a command in one transaction, so a
//! committed event is durable by definition; nothing else needs to be written
//! "in the same transaction". The relay tails the `events` table and keeps a
//! durable cursor (`relay_cursor`) of the last event the broker acknowledged.
//!
//! Tailing by `global_position` alone would lose events: positions are
//! assigned at insert, so a transaction that inserted position 10 may commit
//! after one that inserted 11 was already read and published. The relay
//! therefore reads in `(transaction_id, global_position)` order and only rows
//! whose transaction is older than every transaction still in flight
//! (`transaction_id` below the oldest transaction in flight in this database,
//! see `outbox::publish_horizon`). Such rows are
//! final: no transaction that could still commit has a smaller id, and any
//! transaction that starts writing later gets a larger id, so nothing can
//! appear behind the cursor. Per-aggregate order follows: the transaction
//! writing event n+1 of an aggregate loaded event n, so event n's transaction
//! had committed before the later one was assigned its id.
//!
//! # Delivery
//!
//! A batch is sent concurrently (idempotent producer, `acks=all`, key =
//! aggregate id, so one aggregate stays on one partition in order) and the
//! cursor advances only once every message was acknowledged. A crash or a
//! broker failure re-sends the batch: delivery is at least once, and every
//! re-publication carries the same `eventId` for consumers to deduplicate.
//! The cursor's saves do not wait for the WAL flush: a database crash that
//! loses the last of them only sets the cursor back, and what follows it is
//! re-sent the same way (the events themselves are committed durably).
//! While there is a backlog, the next batch is read and encoded while the
//! broker acknowledges the last one, but sent only after it: a failed batch
//! is re-sent before anything behind it.
//!
//! # Waking up and leading
//!
//! Every commit in this process wakes the relay at once
//! ([`ticketing_eventstore::events_committed`]); a relay in another process
//! polls (every few milliseconds when idle, back to back while there is a
//! backlog). Writers do not NOTIFY: a notifying transaction holds the
//! notification lock through its commit and so serializes every writer's
//! Exactly one relay publishes: the one holding a session-level advisory
//! lock on a dedicated connection, which is also the connection every relay
//! query runs on, so a relay that lost its connection (and with it the
//! lock) cannot advance the cursor; the leader keeps the cursor in memory.
//! Standbys retry the lock every second; PostgreSQL releases it when the
//! leader's process dies, so failover takes about that long.
//!
//! The loop follows zero2prod's delivery worker: [`try_publish_batch`] does
//! one step and reports a [`PublishOutcome`]; [`Relay::run_until_stopped`]
//! only decides how long to wait before the next step.

mod aggregate_history;
mod checkpoint;
mod config;
mod encode;
mod error;
mod history;
mod kafka_client;
mod leader;
mod metrics;
mod outbox;
mod publisher;
mod replay;
mod republish;
mod wait;
mod worker;

pub use aggregate_history::{read_aggregate_history, AggregateHistoryEvent, AggregateHistoryQuery};
pub use checkpoint::{clear_checkpoint, load_checkpoint, save_checkpoint, ReplayCheckpoint};
pub use config::{RelayConfig, Topics};
pub use error::RelayError;
pub use history::{
    count_history, read_fold_events, read_history, FoldEvent, HistoryEvent, HistoryFilter,
    WireEnvelope, WirePayload,
};
pub use kafka_client::{
    check_client_config, client_config, is_secret, parse_property_file, parse_property_list,
    KafkaConfigError, KafkaProperties, KafkaSecurity,
};
pub use leader::RELAY_LOCK_KEY;
pub use metrics::{RelayMetrics, RelayMetricsSnapshot};
pub use outbox::{backlog, published_cursor, Cursor, CURSOR_NAME};
pub use publisher::{provision_topics, Publisher};
pub use replay::load_envelopes;
pub use republish::{topic_version, RepublishOutcome, RepublishPlan, RepublishStart, Republisher};
pub use ticketing_schemas::topics;
pub use worker::{try_publish_batch, PublishOutcome, Relay};
