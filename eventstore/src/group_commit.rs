//! Group commit: the events of concurrent commands committed together.
//!
//! One transaction per command spends most of PostgreSQL's work on the
//! transaction itself (BEGIN, COMMIT, a WAL flush) rather than on the one or
//! two rows it writes. Here commands hand their events to a few writer tasks;
//! each takes whatever is queued (up to a batch), inserts it with one
//! statement, runs the commit effects once over the batch and commits once.
//! Under light load a batch is one command, with no added wait: a writer
//! never holds a batch open for more to arrive. A batch of commands of one
//! event each, with no effect to write (creating a ticket, say), needs no
//! transaction at all: its one statement commits on its own, so that no
//! transaction is held open across round trips while the saturated process
//! gets round to sending COMMIT (the relay waits for every open one).
//!
//! Each command stays all-or-nothing and keeps its optimistic lock. The
//! insert skips rows whose `(aggregate_type, aggregate_id, sequence)` is
//! taken (by another transaction, or by an earlier command of the same
//! batch); a command that lost any of its rows is a conflict, and the rows it
//! did insert are deleted again before the commit, so no reader ever sees
//! part of it. Its effects are written only for the commands that won.
//!
//! Overload stays bounded: a caller waits at most [`GroupCommit::wait`] for
//! its command to be taken into a transaction (then it is dropped, never
//! written, and reported unavailable), a writer waits for a connection no
//! longer than its batch's callers do, and a batch is split into single
//! commands only when the database refused its data, never when it could
//! not be reached. A COMMIT whose reply was lost is read back
//! ([`crate::outcome`]), never committed again; a lone statement's rows are
//! settled by inserting them again, which their keys make harmless.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cqrs_es::{Aggregate, DomainEvent, EventEnvelope};
use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres};
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::time::Instant;
use uuid::Uuid;

use crate::effect::CommitEffect;
use crate::outcome::{self, Resolved};

/// How the writers are sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommit {
    /// Writer tasks, each with at most one transaction in flight (and one
    /// pooled connection while it commits).
    pub writers: usize,
    /// Most commands in one transaction.
    pub max_batch: usize,
    /// How long a caller waits for its command to be taken into a
    /// transaction before it gives up (nothing written, the store reported
    /// unavailable); once taken, as long again at most for the outcome.
    pub wait: Duration,
}

impl Default for GroupCommit {
    /// Measured here (create-ticket at 700 users, 2 cores): one transaction
    /// per command 1,005 req/s; 4 writers 2,827; 8 writers 3,215. Each
    /// writer holds a pooled connection only while it commits.
    fn default() -> Self {
        Self {
            writers: 8,
            max_batch: 256,
            wait: Duration::from_secs(5),
        }
    }
}

/// One command's events in the form they are stored.
#[derive(Debug, Clone)]
pub(crate) struct EventRows {
    pub(crate) aggregate_id: Vec<String>,
    pub(crate) sequence: Vec<i64>,
    pub(crate) event_type: Vec<String>,
    pub(crate) event_version: Vec<String>,
    pub(crate) payload: Vec<String>,
    pub(crate) metadata: Vec<String>,
    /// Chosen here rather than by the database, so that a commit whose
    /// reply was lost can find its own rows (see [`crate::outcome`]).
    pub(crate) event_id: Vec<Uuid>,
}

impl EventRows {
    fn with_capacity(capacity: usize) -> Self {
        Self {
            aggregate_id: Vec::with_capacity(capacity),
            sequence: Vec::with_capacity(capacity),
            event_type: Vec::with_capacity(capacity),
            event_version: Vec::with_capacity(capacity),
            payload: Vec::with_capacity(capacity),
            metadata: Vec::with_capacity(capacity),
            event_id: Vec::with_capacity(capacity),
        }
    }

    pub(crate) fn encode<A: Aggregate>(
        events: &[EventEnvelope<A>],
    ) -> Result<Self, serde_json::Error> {
        let mut rows = Self::with_capacity(events.len());
        for envelope in events {
            rows.aggregate_id.push(envelope.aggregate_id.clone());
            rows.sequence
                .push(i64::try_from(envelope.sequence).unwrap_or(i64::MAX));
            rows.event_type.push(envelope.payload.event_type());
            rows.event_version.push(envelope.payload.event_version());
            rows.payload.push(serde_json::to_string(&envelope.payload)?);
            rows.metadata
                .push(serde_json::to_string(&envelope.metadata)?);
            rows.event_id.push(Uuid::new_v4());
        }
        Ok(rows)
    }

    fn len(&self) -> usize {
        self.sequence.len()
    }

    fn is_empty(&self) -> bool {
        self.sequence.is_empty()
    }

    fn extend(&mut self, other: &Self) {
        self.aggregate_id.extend_from_slice(&other.aggregate_id);
        self.sequence.extend_from_slice(&other.sequence);
        self.event_type.extend_from_slice(&other.event_type);
        self.event_version.extend_from_slice(&other.event_version);
        self.payload.extend_from_slice(&other.payload);
        self.metadata.extend_from_slice(&other.metadata);
        self.event_id.extend_from_slice(&other.event_id);
    }

    fn keys(&self) -> impl Iterator<Item = (&str, i64)> {
        self.aggregate_id
            .iter()
            .map(String::as_str)
            .zip(self.sequence.iter().copied())
    }
}

/// The keys an insert won, and the id of the transaction it ran in (none
/// when nothing was inserted): a lost COMMIT is read back by that id.
pub(crate) struct Inserted {
    pub(crate) keys: HashSet<(String, i64)>,
    pub(crate) transaction_id: Option<i64>,
}

/// Inserts `rows`, skipping any whose key is taken, and answers the keys
/// that were inserted.
pub(crate) async fn insert_rows(
    connection: &mut PgConnection,
    aggregate_type: &str,
    rows: &EventRows,
) -> Result<Inserted, sqlx::Error> {
    let inserted: Vec<(String, i64, i64)> = sqlx::query_as(
        "INSERT INTO events \
         (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, event_id) \
         SELECT $1, aggregate_id, sequence, event_type, event_version, payload::json, metadata::json, event_id \
         FROM UNNEST($2::text[], $3::int8[], $4::text[], $5::text[], $6::text[], $7::text[], $8::uuid[]) \
           AS batch (aggregate_id, sequence, event_type, event_version, payload, metadata, event_id) \
         ON CONFLICT DO NOTHING \
         RETURNING aggregate_id, sequence, transaction_id::text::int8",
    )
    .bind(aggregate_type)
    .bind(&rows.aggregate_id)
    .bind(&rows.sequence)
    .bind(&rows.event_type)
    .bind(&rows.event_version)
    .bind(&rows.payload)
    .bind(&rows.metadata)
    .bind(&rows.event_id)
    .fetch_all(&mut *connection)
    .await?;
    let transaction_id = inserted.first().map(|(_, _, xid)| *xid);
    Ok(Inserted {
        keys: inserted.into_iter().map(|(id, seq, _)| (id, seq)).collect(),
        transaction_id,
    })
}

/// Whether every row of `rows` is among `inserted`.
pub(crate) fn all_inserted(rows: &EventRows, inserted: &HashSet<(String, i64)>) -> bool {
    rows.keys()
        .all(|(id, sequence)| inserted.contains(&(id.to_owned(), sequence)))
}

/// Why a queued commit did not happen.
#[derive(Debug)]
pub(crate) enum Refused {
    /// Another writer holds one of the command's sequence numbers.
    Conflict,
    /// The database refused what the command wrote.
    Database(Arc<sqlx::Error>),
    /// No connection could be had in time, or the database could not be
    /// reached: nothing was written.
    Unavailable(Arc<sqlx::Error>),
    /// The commit was sent and its outcome could not be learned.
    Unknown(Arc<dyn std::error::Error + Send + Sync>),
    /// A writer took the command and was stopped mid-way (its runtime shut
    /// down): rolled back unless it had already committed, which cannot be
    /// told from here.
    Abandoned,
}

/// Where a queued command is: its caller and the writers agree through it
/// on whether it may still be written.
const QUEUED: u8 = 0;
const TAKEN: u8 = 1;
const DROPPED: u8 = 2;

struct Pending<A: Aggregate> {
    rows: EventRows,
    events: Vec<EventEnvelope<A>>,
    reply: oneshot::Sender<Result<(), Refused>>,
    /// When its caller stops waiting for a writer to take it.
    deadline: Instant,
    state: Arc<AtomicU8>,
}

impl<A: Aggregate> Pending<A> {
    /// Takes the command into a transaction, unless its caller gave up.
    fn take(&self) -> bool {
        match self
            .state
            .compare_exchange(QUEUED, TAKEN, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(state) => state == TAKEN,
        }
    }
}

/// Why a batch's transaction failed.
enum BatchFailure {
    /// The database refused something a command wrote.
    Data(Arc<sqlx::Error>),
    /// Nothing was written: no connection, or it broke before COMMIT.
    Transient(Arc<sqlx::Error>),
    /// COMMIT was sent; whether it took could not be learned. `won` as if
    /// it had.
    Unknown {
        won: Vec<bool>,
        error: Arc<outcome::Unresolved>,
    },
}

impl From<sqlx::Error> for BatchFailure {
    fn from(error: sqlx::Error) -> Self {
        if outcome::is_transient(&error) {
            Self::Transient(Arc::new(error))
        } else {
            Self::Data(Arc::new(error))
        }
    }
}

impl BatchFailure {
    /// The answer of each of `count` commands.
    fn refusals(self, count: usize) -> Vec<Result<(), Refused>> {
        match self {
            Self::Data(error) => (0..count)
                .map(|_| Err(Refused::Database(Arc::clone(&error))))
                .collect(),
            Self::Transient(error) => (0..count)
                .map(|_| Err(Refused::Unavailable(Arc::clone(&error))))
                .collect(),
            Self::Unknown { won, error } => won
                .into_iter()
                .map(|won| {
                    if won {
                        Err(Refused::Unknown(error.clone()))
                    } else {
                        Err(Refused::Conflict)
                    }
                })
                .collect(),
        }
    }
}

/// The queue in front of the writers of one aggregate type.
pub(crate) struct Committer<A: Aggregate> {
    queue: mpsc::Sender<Pending<A>>,
    wait: Duration,
}

/// The queued command was not committed and never will be: the writers are
/// gone (their runtime shut down). Its rows come back, to commit another way.
pub(crate) struct WritersGone(pub(crate) EventRows);

impl<A> Committer<A>
where
    A: Aggregate + 'static,
{
    /// Starts the writers on the current Tokio runtime.
    pub(crate) fn start(
        pool: PgPool,
        effects: Arc<[Arc<dyn CommitEffect<A>>]>,
        config: GroupCommit,
    ) -> Self {
        let max_batch = config.max_batch.max(1);
        let (queue, receiver) = mpsc::channel(max_batch * config.writers.max(1) * 4);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..config.writers.max(1) {
            let writer = Writer {
                pool: pool.clone(),
                effects: Arc::clone(&effects),
                receiver: Arc::clone(&receiver),
                max_batch,
                read_back_within: config.wait,
            };
            drop(tokio::spawn(writer.run()));
        }
        Self {
            queue,
            wait: config.wait,
        }
    }

    /// Queues the events and waits for their transaction's outcome, within
    /// the configured bound. `Err(WritersGone)` means nothing was written.
    pub(crate) async fn commit(
        &self,
        rows: EventRows,
        events: Vec<EventEnvelope<A>>,
    ) -> Result<Result<(), Refused>, WritersGone> {
        let deadline = Instant::now() + self.wait;
        let state = Arc::new(AtomicU8::new(QUEUED));
        let (reply, mut outcome) = oneshot::channel();
        let pending = Pending {
            rows,
            events,
            reply,
            deadline,
            state: Arc::clone(&state),
        };
        match tokio::time::timeout_at(deadline, self.queue.send(pending)).await {
            Ok(Ok(())) => {}
            Ok(Err(unsent)) => return Err(WritersGone(unsent.0.rows)),
            // The queue stayed full: the command was never sent.
            Err(_) => {
                return Ok(Err(Refused::Unavailable(Arc::new(
                    sqlx::Error::PoolTimedOut,
                ))))
            }
        }
        if let Ok(answer) = tokio::time::timeout_at(deadline, &mut outcome).await {
            return Ok(answer.unwrap_or(Err(Refused::Abandoned)));
        }
        let dropped = state.compare_exchange(QUEUED, DROPPED, Ordering::AcqRel, Ordering::Acquire);
        if dropped.is_ok() {
            // No writer took it in time, and none will.
            return Ok(Err(Refused::Unavailable(Arc::new(
                sqlx::Error::PoolTimedOut,
            ))));
        }
        // Its transaction is under way: wait for it, but not forever.
        Ok(match tokio::time::timeout(self.wait, outcome).await {
            Ok(answer) => answer.unwrap_or(Err(Refused::Abandoned)),
            Err(_) => Err(Refused::Unknown(Arc::new(outcome::Unresolved::new(
                "the commit did not finish within the wait",
            )))),
        })
    }
}

fn outcome(won: bool) -> Result<(), Refused> {
    if won {
        Ok(())
    } else {
        Err(Refused::Conflict)
    }
}

struct Writer<A: Aggregate> {
    pool: PgPool,
    effects: Arc<[Arc<dyn CommitEffect<A>>]>,
    receiver: Arc<Mutex<mpsc::Receiver<Pending<A>>>>,
    max_batch: usize,
    /// How long a lost COMMIT's outcome is looked for.
    read_back_within: Duration,
}

impl<A> Writer<A>
where
    A: Aggregate + 'static,
{
    async fn run(self) {
        loop {
            let batch = {
                let mut receiver = self.receiver.lock().await;
                let Some(first) = receiver.recv().await else {
                    return;
                };
                let mut batch = vec![first];
                while batch.len() < self.max_batch {
                    match receiver.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                batch
            };
            metrics::histogram!("command_commit_batch_size", "aggregate_type" => A::TYPE)
                .record(batch.len() as f64);
            let outcomes = match self.commit(&batch).await {
                Ok(won) => won.into_iter().map(outcome).collect(),
                // One command's rows or effects may be what the database
                // refused: commit each alone, so only that one fails.
                Err(BatchFailure::Data(_)) if batch.len() > 1 => self.commit_each(&batch).await,
                Err(failure) => failure.refusals(batch.len()),
            };
            for (pending, outcome) in batch.into_iter().zip(outcomes) {
                // The command's caller may have gone (request dropped); its
                // events are committed all the same.
                let _ = pending.reply.send(outcome);
            }
        }
    }

    /// Commits each command of a refused batch in a transaction of its own;
    /// stops at the first failure to reach the database, which fails the
    /// rest too rather than waiting for it once per command.
    async fn commit_each(&self, batch: &[Pending<A>]) -> Vec<Result<(), Refused>> {
        let mut outcomes = Vec::with_capacity(batch.len());
        for single in batch.chunks(1) {
            match self.commit(single).await {
                Ok(won) => outcomes.push(outcome(won.first().copied().unwrap_or(false))),
                Err(BatchFailure::Transient(error)) => {
                    let rest = batch.len() - outcomes.len();
                    outcomes.extend(BatchFailure::Transient(error).refusals(rest));
                    break;
                }
                Err(failure) => outcomes.extend(failure.refusals(1)),
            }
        }
        outcomes
    }

    /// Commits the batch (never empty); answers, per command, whether it
    /// won its rows. Commands whose callers gave up before a connection was
    /// had are left out (they lose: never written).
    async fn commit(&self, batch: &[Pending<A>]) -> Result<Vec<bool>, BatchFailure> {
        let deadline = batch
            .iter()
            .map(|pending| pending.deadline)
            .max()
            .unwrap_or_else(Instant::now);
        let mut connection = match tokio::time::timeout_at(deadline, self.pool.acquire()).await {
            Ok(connection) => connection?,
            Err(_) => return Err(BatchFailure::Transient(Arc::new(sqlx::Error::PoolTimedOut))),
        };
        // Two commands of one batch that decided on the same state number
        // their events alike: the later one loses at once, so that every key
        // in the statement is unique and an inserted key names its command.
        let mut claimed: HashSet<(&str, i64)> = HashSet::new();
        let mut all = EventRows::with_capacity(batch.iter().map(|p| p.rows.len()).sum());
        let included: Vec<bool> = batch
            .iter()
            .map(|pending| {
                if !pending.take() || pending.rows.keys().any(|key| claimed.contains(&key)) {
                    return false;
                }
                claimed.extend(pending.rows.keys());
                all.extend(&pending.rows);
                true
            })
            .collect();
        if all.is_empty() {
            return Ok(vec![false; batch.len()]);
        }
        let single_statement = batch.iter().zip(&included).all(|(pending, included)| {
            !included
                || (pending.rows.len() == 1
                    && !self.effects.iter().any(|e| e.writes_for(&pending.events)))
        });
        if single_statement {
            return self
                .commit_in_one_statement(connection, batch, &included, &all)
                .await;
        }
        let mut tx = sqlx::Connection::begin(&mut *connection).await?;
        let inserted = insert_rows(&mut tx, A::TYPE, &all).await?;
        let won: Vec<bool> = batch
            .iter()
            .zip(&included)
            .map(|(pending, included)| *included && all_inserted(&pending.rows, &inserted.keys))
            .collect();
        // A command that lost some rows but won others: take its winners back.
        let mut retract_ids = Vec::new();
        let mut retract_sequences = Vec::new();
        let lost = batch.iter().zip(included.iter().zip(&won));
        for (pending, _) in lost.filter(|(_, (included, won))| **included && !**won) {
            for (id, sequence) in pending.rows.keys() {
                if inserted.keys.contains(&(id.to_owned(), sequence)) {
                    retract_ids.push(id.to_owned());
                    retract_sequences.push(sequence);
                }
            }
        }
        if !retract_ids.is_empty() {
            let _ = sqlx::query(
                "DELETE FROM events WHERE aggregate_type = $1 \
                 AND (aggregate_id, sequence) IN (SELECT * FROM UNNEST($2::text[], $3::int8[]))",
            )
            .bind(A::TYPE)
            .bind(&retract_ids)
            .bind(&retract_sequences)
            .execute(&mut *tx)
            .await?;
        }
        if !self.effects.is_empty() {
            let events: Vec<EventEnvelope<A>> = batch
                .iter()
                .zip(&won)
                .filter(|(_, won)| **won)
                .flat_map(|(pending, _)| pending.events.iter().cloned())
                .collect();
            if !events.is_empty() {
                for effect in self.effects.iter() {
                    effect.write(&mut tx, &events).await?;
                }
            }
        }
        if let Err(error) = tx.commit().await {
            let transaction_id = inserted
                .transaction_id
                .filter(|_| outcome::is_ambiguous_commit(&error));
            // Answered, or nothing of ours in it: the error is the outcome.
            let Some(transaction_id) = transaction_id else {
                return Err(error.into());
            };
            match outcome::resolve(&self.pool, transaction_id, self.read_back_within).await {
                Resolved::Committed => {}
                Resolved::RolledBack => return Err(BatchFailure::Transient(Arc::new(error))),
                Resolved::Unknown(unresolved) => {
                    return Err(BatchFailure::Unknown {
                        won,
                        error: Arc::new(unresolved),
                    })
                }
            }
        }
        crate::committed::signal();
        Ok(won)
    }

    /// Commits a batch of commands of one event each, none with an effect
    /// to write, in one statement outside any explicit transaction: the
    /// transaction lives only while the server runs the statement, never
    /// across a round trip to this process, so it holds back neither the
    /// relay (which publishes nothing committed after the oldest open
    /// transaction) nor vacuum. A command of one row needs no retraction: it
    /// won its row or lost it. When the reply is lost, the rows are inserted
    /// again and looked up by their event ids ([`outcome::resolve_rows`]).
    async fn commit_in_one_statement(
        &self,
        mut connection: PoolConnection<Postgres>,
        batch: &[Pending<A>],
        included: &[bool],
        all: &EventRows,
    ) -> Result<Vec<bool>, BatchFailure> {
        let ours = match insert_rows(&mut connection, A::TYPE, all).await {
            Ok(inserted) => inserted.keys,
            Err(error) if outcome::is_ambiguous_commit(&error) => {
                // The connection is broken; it must not go back to the pool.
                connection.close_on_drop();
                drop(connection);
                match outcome::resolve_rows(&self.pool, A::TYPE, all, self.read_back_within).await {
                    Ok(ours) => ours,
                    Err(unresolved) => {
                        return Err(BatchFailure::Unknown {
                            won: included.to_vec(),
                            error: Arc::new(unresolved),
                        })
                    }
                }
            }
            Err(error) => return Err(error.into()),
        };
        crate::committed::signal();
        Ok(batch
            .iter()
            .zip(included)
            .map(|(pending, included)| *included && all_inserted(&pending.rows, &ours))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(keys: &[(&str, i64)]) -> EventRows {
        EventRows {
            aggregate_id: keys.iter().map(|(id, _)| (*id).to_owned()).collect(),
            sequence: keys.iter().map(|(_, s)| *s).collect(),
            event_type: vec![String::new(); keys.len()],
            event_version: vec![String::new(); keys.len()],
            payload: vec![String::new(); keys.len()],
            metadata: vec![String::new(); keys.len()],
            event_id: keys.iter().map(|_| Uuid::new_v4()).collect(),
        }
    }

    #[test]
    fn a_command_wins_only_with_every_row() {
        let inserted: HashSet<(String, i64)> = [
            ("a".to_owned(), 1),
            ("a".to_owned(), 2),
            ("b".to_owned(), 7),
        ]
        .into_iter()
        .collect();
        assert!(all_inserted(&rows(&[("a", 1), ("a", 2)]), &inserted));
        assert!(!all_inserted(&rows(&[("b", 7), ("b", 8)]), &inserted));
        assert!(!all_inserted(&rows(&[("c", 1)]), &inserted));
    }

    #[test]
    fn extending_keeps_the_columns_aligned() {
        let mut all = rows(&[("a", 1)]);
        all.extend(&rows(&[("b", 3), ("c", 4)]));
        assert_eq!(all.len(), 3);
        assert_eq!(
            all.keys().collect::<Vec<_>>(),
            vec![("a", 1), ("b", 3), ("c", 4)]
        );
    }
}
