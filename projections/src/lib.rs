//! Projection workers: the read models the GET endpoints serve, built from
//! the Kafka topics the relay publishes.
//!
//! # Exactly once, in effect
//!
//! Delivery is at least once (the relay re-sends after a failure; a worker
//! that dies before committing offsets is followed by one that consumes them
//! again), so applying must be idempotent. Each view row carries its own
//! checkpoint, `last_sequence`: the aggregate's last applied event. An event
//! applies only if it is the next one (`sequence = last_sequence + 1`), and
//! the change and the new checkpoint are one row written in one
//! transaction, so an event seen twice finds the checkpoint already past it
//! and changes nothing. Kafka offsets are committed only after that
//! transaction.
//!
//! # Set-based
//!
//! A batch is decoded at once, the rows it continues are loaded and locked
//! with one statement per view, its events are folded onto them in memory
//! (`rows`, the same fold `replay rebuild` uses), and the changed rows
//! are written back with one or two multi-row statements per view: a
//! handful of round trips per batch rather than one per event.
//!
//! # Order and gaps
//!
//! The relay keys messages by aggregate id, so one aggregate's events arrive
//! in order on one partition. A message further ahead than the next one
//! (the broker lost data, or a topic was recreated) is a gap: the missing
//! events are read from the event store, in the same database and
//! transaction, converted exactly as the relay publishes them
//! ([`ticketing_relay::load_envelopes`]), and applied first. A gap is never
//! skipped: if the store lacks them too, the message fails like a poison one.
//!
//! # When the broker loses data
//!
//! The event store, not the topics, is the truth: each worker also follows
//! the store behind the relay and sweeps the views against it
//! ([`reconcile`]), healing from the store what the topics lost; losses
//! seen on the topics themselves (offsets going backwards, a log ending
//! before what was projected) are reported and trigger that check at once.
//!
//! # Poison messages
//!
//! A message that cannot be decoded is parked on `<topic>.dlq` at once;
//! one that fails to apply is retried with exponential backoff, then parked
//! with the error and its origin in headers ([`dead_letter`]). Either way
//! its offset is then committed and the partition moves on. A database
//! outage is not a poison message: it is retried until it ends.
//!
//! # The loop
//!
//! As zero2prod's delivery worker: [`Projector::try_project_batch`] takes
//! one step and reports a [`ProjectOutcome`]; [`Projector::run_until_stopped`]
//! only fetches, retries and commits. A batch is whatever the consumer has
//! already fetched (never waited for), applied in one transaction; should
//! it fail, its events are applied one per transaction, so that only the
//! one that fails is retried and dead-lettered.

mod apply;
pub mod changes;
mod config;
mod consumer;
pub mod dead_letter;
mod decode;
mod error;
mod lag;
mod metrics;
pub mod queries;
pub mod rebuild;
pub mod reconcile;
pub mod redrive;
mod rows;
mod step;
mod worker;

pub use apply::{apply_event, apply_events, apply_events_committed, Applied};
pub use config::{ProjectionConfig, DLQ_SUFFIX};
pub use decode::{AggregateKind, DecodeError, ProjectedEvent};
pub use error::ProjectionError;
pub use metrics::{PartitionLag, ProjectionMetrics, ProjectionMetricsSnapshot};
pub use step::{BatchReport, Incoming, ProjectOutcome};
pub use worker::Projector;
