use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, AggregateContext, AggregateError, EventEnvelope, EventStore};
use postgres_es::PostgresEventRepository;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use ticketing_aggregates::upcasting::upcasters_for;

use crate::effect::CommitEffect;
use crate::group_commit::{self, Committer, EventRows, GroupCommit, Refused, WritersGone};
use crate::outcome::{self, Resolved};
use crate::retry::Backoff;
use crate::CommandMetadata;

/// The state a command produced, and the events it committed (empty when the
/// command was an accepted no-op, such as a repeated reservation).
#[derive(Debug)]
pub struct Executed<A: Aggregate> {
    pub aggregate: A,
    pub events: Vec<EventEnvelope<A>>,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error + 'static> {
    /// The aggregate refused the command: a business rule, reported as is.
    #[error(transparent)]
    Rejected(E),
    /// Other writers kept committing to this aggregate first, every attempt.
    #[error("the {aggregate_type} changed concurrently {attempts} times in a row; try again")]
    Contended {
        aggregate_type: &'static str,
        attempts: u32,
    },
    /// No connection could be had in time, or the database could not be
    /// reached: nothing was written. Worth retrying shortly.
    #[error(
        "the event store is unavailable for {aggregate_type} {aggregate_id}; nothing was written"
    )]
    Unavailable {
        aggregate_type: &'static str,
        aggregate_id: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The commit was sent but its outcome could not be learned: the events
    /// may be stored. Nothing may be compensated on the strength of it; the
    /// same request retried (with the same ids) finds out.
    #[error("the outcome of a commit on {aggregate_type} {aggregate_id} is unknown")]
    Unknown {
        aggregate_type: &'static str,
        aggregate_id: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("event store failure on {aggregate_type} {aggregate_id}")]
    Store {
        aggregate_type: &'static str,
        aggregate_id: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Runs commands against one aggregate type: load, decide, commit, and on an
/// optimistic-lock conflict load the new state and decide again.
pub struct CommandExecutor<A: Aggregate> {
    store: PersistedEventStore<PostgresEventRepository, A>,
    pool: PgPool,
    services: A::Services,
    max_attempts: u32,
    effects: Vec<Arc<dyn CommitEffect<A>>>,
    group_commit: Option<GroupCommit>,
    /// Started on the first commit, inside the runtime that serves it.
    committer: OnceLock<Committer<A>>,
}

impl<A> CommandExecutor<A>
where
    A: Aggregate + Clone + 'static,
    A::Command: Clone,
    A::Error: 'static,
{
    /// Conflicting writers are rare (one aggregate, same instant); a handful
    /// of attempts absorbs bursts like many buyers racing for one ticket.
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 20;

    pub fn new(pool: PgPool, services: A::Services) -> Self {
        let repository = PostgresEventRepository::new(pool.clone());
        Self {
            // Events stored at an older version load through the aggregate's
            // upcasters (ticketing_aggregates::upcasting).
            store: PersistedEventStore::new_event_store(repository)
                .with_upcasters(upcasters_for(A::TYPE)),
            pool,
            services,
            max_attempts: Self::DEFAULT_MAX_ATTEMPTS,
            effects: Vec::new(),
            group_commit: Some(GroupCommit::default()),
            committer: OnceLock::new(),
        }
    }

    /// Runs `effect` in the transaction of every commit of this executor.
    #[must_use]
    pub fn with_effect(mut self, effect: Arc<dyn CommitEffect<A>>) -> Self {
        self.effects.push(effect);
        // Writers started earlier know only the earlier effects.
        self.committer = OnceLock::new();
        self
    }

    /// Commits concurrent commands together (`Some`, the default) or each
    /// in its own transaction (`None`). See [`GroupCommit`].
    #[must_use]
    pub fn with_group_commit(mut self, group_commit: Option<GroupCommit>) -> Self {
        self.group_commit = group_commit;
        self.committer = OnceLock::new();
        self
    }

    #[must_use]
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts.max(1);
        self
    }

    /// Executes `command` on the aggregate `aggregate_id`, retrying on
    /// concurrent modification, and returns the resulting state.
    pub async fn execute(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: &CommandMetadata,
    ) -> Result<Executed<A>, CommandError<A::Error>> {
        self.execute_with(aggregate_id, command, metadata, None)
            .await
    }

    /// As [`CommandExecutor::execute`], also writing `extra` in the commit
    /// transaction (not called when the command is an accepted no-op).
    #[tracing::instrument(skip_all, fields(aggregate_type = A::TYPE, aggregate_id = %aggregate_id))]
    pub async fn execute_with(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: &CommandMetadata,
        extra: Option<&dyn CommitEffect<A>>,
    ) -> Result<Executed<A>, CommandError<A::Error>> {
        for attempt in 1..=self.max_attempts {
            if let Some(executed) = self
                .try_execute(aggregate_id, command.clone(), metadata, extra)
                .await?
            {
                return Ok(executed);
            }
            record_conflict(A::TYPE, attempt < self.max_attempts);
            tracing::debug!(
                attempt,
                aggregate_id,
                "optimistic-lock conflict, re-running"
            );
            backoff(attempt).await;
        }
        Err(CommandError::Contended {
            aggregate_type: A::TYPE,
            attempts: self.max_attempts,
        })
    }

    /// Executes `command` on an aggregate expected not to exist yet, such as
    /// one under a freshly generated id: decided against the empty state
    /// without reading the store. If the aggregate does exist after all (a
    /// retried request reusing its id), its first sequence number is taken,
    /// and the command runs again as [`CommandExecutor::execute`] against the
    /// real state.
    #[tracing::instrument(skip_all, fields(aggregate_type = A::TYPE, aggregate_id = %aggregate_id))]
    pub async fn execute_new(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: &CommandMetadata,
    ) -> Result<Executed<A>, CommandError<A::Error>> {
        let mut aggregate = A::default();
        let sink = EventSink::default();
        match aggregate
            .handle(command.clone(), &self.services, &sink)
            .await
        {
            Ok(()) => {}
            // The empty state refused it; the real one may differ.
            Err(_) => return self.execute(aggregate_id, command, metadata).await,
        }
        let new_events = sink.collect().await;
        if new_events.is_empty() {
            return self.execute(aggregate_id, command, metadata).await;
        }
        let events = wrap(aggregate_id, 0, new_events, &metadata.to_map());
        if self.commit(aggregate_id, &events, None).await? {
            Ok(Executed { aggregate, events })
        } else {
            self.execute(aggregate_id, command, metadata).await
        }
    }

    /// Loads the current state without changing anything.
    pub async fn load(&self, aggregate_id: &str) -> Result<A, CommandError<A::Error>> {
        let mut context = self
            .store
            .load_aggregate(aggregate_id)
            .await
            .map_err(|e| store_error::<A>(aggregate_id, e))?;
        Ok(context.aggregate().clone())
    }

    /// One attempt: `None` when another writer committed to the aggregate
    /// first (the command is to be decided again).
    async fn try_execute(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: &CommandMetadata,
        extra: Option<&dyn CommitEffect<A>>,
    ) -> Result<Option<Executed<A>>, CommandError<A::Error>> {
        let mut context = self
            .store
            .load_aggregate(aggregate_id)
            .await
            .map_err(|e| store_error::<A>(aggregate_id, e))?;
        let last_sequence = context.current_sequence;
        let sink = EventSink::default();
        context
            .aggregate()
            .handle(command, &self.services, &sink)
            .await
            .map_err(CommandError::Rejected)?;
        let aggregate = context.aggregate().clone();
        let new_events = sink.collect().await;
        if new_events.is_empty() {
            return Ok(Some(Executed {
                aggregate,
                events: Vec::new(),
            }));
        }
        let events = wrap(aggregate_id, last_sequence, new_events, &metadata.to_map());
        let won = self.commit(aggregate_id, &events, extra).await?;
        Ok(won.then_some(Executed { aggregate, events }))
    }

    /// Inserts the events (the primary key on `(aggregate_type,
    /// aggregate_id, sequence)` is the optimistic lock) and every effect's
    /// rows in one transaction: shared with concurrent commands (group
    /// commit) unless the command brings an `extra` effect of its own.
    /// `Ok(false)`: another writer holds one of the sequence numbers.
    async fn commit(
        &self,
        aggregate_id: &str,
        events: &[EventEnvelope<A>],
        extra: Option<&dyn CommitEffect<A>>,
    ) -> Result<bool, CommandError<A::Error>> {
        let failed = Failed {
            aggregate_type: A::TYPE,
            aggregate_id,
        };
        let mut rows = EventRows::encode(events).map_err(|e| failed.store(e))?;
        if let (None, Some(config)) = (extra, self.group_commit) {
            let committer = self.committer.get_or_init(|| {
                Committer::start(self.pool.clone(), self.effects.clone().into(), config)
            });
            match committer.commit(rows, events.to_vec()).await {
                Ok(Ok(())) => return Ok(true),
                Ok(Err(Refused::Conflict)) => return Ok(false),
                Ok(Err(Refused::Database(error))) => return Err(failed.store(SharedError(error))),
                Ok(Err(Refused::Unavailable(error))) => {
                    return Err(failed.unavailable(SharedError(error)))
                }
                Ok(Err(Refused::Unknown(error))) => return Err(failed.unknown(error)),
                Ok(Err(Refused::Abandoned)) => {
                    return Err(failed
                        .unknown("the commit was interrupted by shutdown; its outcome is unknown"))
                }
                // Nothing was written: commit on our own below.
                Err(WritersGone(unsent)) => rows = unsent,
            }
        }
        let mut tx = self.pool.begin().await.map_err(|e| failed.sql(e))?;
        let inserted = group_commit::insert_rows(&mut tx, A::TYPE, &rows)
            .await
            .map_err(|e| failed.sql(e))?;
        if !group_commit::all_inserted(&rows, &inserted.keys) {
            // Dropping the transaction rolls back what was inserted.
            return Ok(false);
        }
        for effect in self.effects.iter().map(AsRef::as_ref).chain(extra) {
            if let Err(error) = effect.write(&mut tx, events).await {
                return match error {
                    // An effect's own unique row taken: another writer won.
                    sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => Ok(false),
                    other => Err(failed.sql(other)),
                };
            }
        }
        if let Err(error) = tx.commit().await {
            let transaction_id = inserted
                .transaction_id
                .filter(|_| outcome::is_ambiguous_commit(&error));
            let Some(transaction_id) = transaction_id else {
                return Err(failed.sql(error));
            };
            let within = self.group_commit.unwrap_or_default().wait;
            match outcome::resolve(&self.pool, transaction_id, within).await {
                Resolved::Committed => {}
                Resolved::RolledBack => return Err(failed.unavailable(error)),
                Resolved::Unknown(unresolved) => return Err(failed.unknown(unresolved)),
            }
        }
        crate::committed::signal();
        Ok(true)
    }
}

/// Builds the error of a failed commit on one aggregate.
struct Failed<'a> {
    aggregate_type: &'static str,
    aggregate_id: &'a str,
}

type Source = Box<dyn std::error::Error + Send + Sync>;

impl Failed<'_> {
    fn store<E: std::error::Error>(&self, source: impl Into<Source>) -> CommandError<E> {
        CommandError::Store {
            aggregate_type: self.aggregate_type,
            aggregate_id: self.aggregate_id.to_owned(),
            source: source.into(),
        }
    }

    fn unavailable<E: std::error::Error>(&self, source: impl Into<Source>) -> CommandError<E> {
        CommandError::Unavailable {
            aggregate_type: self.aggregate_type,
            aggregate_id: self.aggregate_id.to_owned(),
            source: source.into(),
        }
    }

    fn unknown<E: std::error::Error>(&self, source: impl Into<Source>) -> CommandError<E> {
        CommandError::Unknown {
            aggregate_type: self.aggregate_type,
            aggregate_id: self.aggregate_id.to_owned(),
            source: source.into(),
        }
    }

    /// A statement that failed before COMMIT: nothing was written.
    fn sql<E: std::error::Error>(&self, error: sqlx::Error) -> CommandError<E> {
        if outcome::is_transient(&error) {
            self.unavailable(error)
        } else {
            self.store(error)
        }
    }
}

/// A database error reported to every command of a failed group commit.
#[derive(Debug)]
struct SharedError(Arc<sqlx::Error>);

impl std::fmt::Display for SharedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "group commit failed: {}", self.0)
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.as_ref())
    }
}

/// Numbers the new events after `last_sequence`, as cqrs-es does.
fn wrap<A: Aggregate>(
    aggregate_id: &str,
    last_sequence: usize,
    events: Vec<A::Event>,
    metadata: &HashMap<String, String>,
) -> Vec<EventEnvelope<A>> {
    events
        .into_iter()
        .zip(last_sequence + 1..)
        .map(|(payload, sequence)| EventEnvelope {
            aggregate_id: aggregate_id.to_owned(),
            sequence,
            payload,
            metadata: metadata.clone(),
        })
        .collect()
}

/// Every optimistic-lock conflict counts; `retried` when the command runs
/// again (the last conflict of an exhausted command is not retried).
fn record_conflict(aggregate_type: &'static str, retried: bool) {
    metrics::counter!("command_conflicts_total", "aggregate_type" => aggregate_type).increment(1);
    if retried {
        metrics::counter!("command_retries_total", "aggregate_type" => aggregate_type).increment(1);
    }
}

/// A short random pause, so writers that collided do not collide again in
/// lockstep.
async fn backoff(attempt: u32) {
    const CONFLICT: Backoff = Backoff::new(Duration::from_micros(500), Duration::from_millis(5));
    tokio::time::sleep(CONFLICT.delay(attempt)).await;
}

fn store_error<A: Aggregate>(
    aggregate_id: &str,
    error: AggregateError<A::Error>,
) -> CommandError<A::Error> {
    let source: Box<dyn std::error::Error + Send + Sync> = match error {
        AggregateError::DatabaseConnectionError(e)
        | AggregateError::DeserializationError(e)
        | AggregateError::UnexpectedError(e) => e,
        // Handled by the caller; kept total so a new variant is still reported.
        AggregateError::UserError(e) => e.to_string().into(),
        AggregateError::AggregateConflict => "unexpected optimistic-lock conflict".into(),
    };
    let failed = Failed {
        aggregate_type: A::TYPE,
        aggregate_id,
    };
    match source.downcast::<sqlx::Error>() {
        Ok(error) => failed.sql(*error),
        Err(source) => failed.store(source),
    }
}
