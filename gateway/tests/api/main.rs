//! Black-box tests of the REST API: a real server on a fresh PostgreSQL
//! database per test, driven over HTTP exactly as clients drive it.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod ambiguous_commit;
mod auth_limits;
mod bad_input;
mod concurrency;
mod conditional;
mod edge;
mod health;
mod helpers;
mod history;
mod idempotency;
mod openapi;
mod orders;
mod overload;
mod page_cache;
mod payments;
mod read_after;
mod read_replica;
mod sessions;
mod shedding;
mod tickets;
mod users;
