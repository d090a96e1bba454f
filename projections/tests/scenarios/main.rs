//! "Kafka topic in, read model out": envelopes are produced to real topics
//! (or written through the real write path and read back from the event
//! store), projected by real workers into a fresh database, and the read
//! models are checked.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod changes;
mod common;
mod gap;
mod horizon;
mod lag;
mod lost;
mod outage;
mod plans;
mod poison;
mod raced;
mod replay;
mod sharing;
mod sweep_race;
mod views;
