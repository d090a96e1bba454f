//! The process managers of ticketing.
//!
//! # Durable timers
//!
//! Follow-up work is a row in `saga_timers`, written by a [`CommitEffect`]
//! in the same transaction as the event that calls for it: `OrderPlaced`
//! schedules the order's expiry at its deadline, `OrderCancelled` and
//! `OrderExpired` a release of its ticket, `TicketReserved` a reservation
//! check after the deadline (the order may never have been recorded), and a
//! started payment a recovery of its charge. A timer therefore exists
//! exactly when its event does, whatever crashes.
//!
//! [`SagaWorker`]s claim due timers with `FOR UPDATE SKIP LOCKED`, moving
//! each one lease ahead under a fresh claim token in the same statement, so
//! no transaction stays open while the follow-up command runs; each firing
//! is fenced by its claim (the lease is renewed before it starts and while
//! it runs, and refused once it ran out), so no two workers fire one timer. A
//! timer is deleted once its command succeeded; a worker that dies
//! mid-task leaves it to fire again after the lease, which is safe because
//! every follow-up command is idempotent (expiring a paid or cancelled
//! order, releasing a ticket the order no longer holds: no-ops).
//!
//! # Payments
//!
//! See [`payments`]: one payment at a time per order, a Stripe idempotency
//! key per attempt, and a recovery timer that settles any payment a crash
//! or a timeout left open. The provider sits behind a [`CircuitBreaker`].
//!
//! [`CommitEffect`]: ticketing_eventstore::CommitEffect

pub mod circuit_breaker;
pub mod commands;
pub mod local_provider;
pub mod order_expiry;
pub mod outcome;
pub mod payment_provider;
pub mod payments;
pub mod reservation_repair;
pub mod schedule;
pub mod settings;
pub mod stripe;
#[cfg(feature = "stand-in")]
pub mod stripe_stand_in;
pub mod timers;
pub mod worker;

pub use circuit_breaker::{Admission, BreakerSettings, BreakerState, CircuitBreaker};
pub use commands::{Commands, DEFAULT_RESERVATION_GRACE};
pub use outcome::{SagaError, TaskOutcome};
pub use payment_provider::{
    Charge, ChargeError, ChargeRequest, ChargeState, FoundCharge, PaymentProvider,
};
pub use payments::{Paid, PayError, PayRequest, PaymentService, DEFAULT_MAX_PAYMENT_ATTEMPTS};
pub use settings::PaymentSettings;
pub use worker::{ExecutionOutcome, SagaConfig, SagaWorker};
