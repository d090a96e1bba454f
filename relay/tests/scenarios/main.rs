//! Relay scenarios against a real PostgreSQL and a real Kafka-protocol
//! broker (Tansu), read back with real rdkafka consumers.
//!
//! Every test has its own database and its own topics, so they run in
//! parallel against the shared broker; the scenarios that stop or kill the
//! broker start a broker of their own.

mod broker_outage;
mod common;
mod delivery;
mod failover;
mod late_commit;
mod plans;
mod relay_crash;
mod restore;
