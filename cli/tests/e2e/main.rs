//! End-to-end tests: the real `ticketing serve` process (gateway, relay and
//! projections) on a fresh database and fresh topics of the real broker,
//! driven over HTTP as clients drive it.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod broker_loss;
mod cli_tool;
mod fuzzed_input;
mod gauges;
mod helpers;
mod history;
mod journey;
mod limits;
mod production;
mod prometheus;
mod queries;
mod read_your_writes;
mod trace;
