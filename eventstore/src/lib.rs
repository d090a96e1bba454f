//! The PostgreSQL event store of ticketing.
//!
//! Aggregates (crate `ticketing-aggregates`) persist their events through
//! postgres-es into the `events` table. This crate owns the schema (sqlx
//! migrations, embedded in the binary) and the [`CommandExecutor`], which runs
//! a command against the current state of one aggregate and commits the
//! resulting events with optimistic concurrency, re-running the command a
//! bounded number of times when another writer got there first.

mod as_of;
mod committed;
mod database;
mod effect;
mod executor;
mod group_commit;
mod metadata;
mod outcome;
pub mod retry;
mod scratch;
pub mod trace_context;

pub use as_of::{load_as_of, AsOfError};
pub use committed::events_committed;
pub use database::{connect, migrate, DatabaseError, MIGRATOR};
pub use effect::CommitEffect;
pub use executor::{CommandError, CommandExecutor, Executed};
pub use group_commit::GroupCommit;
pub use metadata::CommandMetadata;
pub use outcome::Unresolved;
pub use scratch::{with_database, ScratchDatabase};
