//! Saga scenarios against the real PostgreSQL (and, for payments, the real
//! async-stripe client pointed at the local Stripe stand-in).
#![allow(clippy::unwrap_used)]

mod common;
mod expiry;
mod fixture;
mod payment_faults;
mod payments;
mod repair;
mod soak;
mod timers;
