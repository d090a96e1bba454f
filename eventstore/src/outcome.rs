//! What a failed database call says about a commit.
//!
//! A statement the server refused (a data error) was caused by what one of
//! the commands wrote. A lost connection or an exhausted pool says nothing
//! about the commands, and before COMMIT was sent nothing was written: a
//! transient failure, retried later as a whole. A COMMIT whose reply was
//! lost is neither: the transaction may have committed, so its outcome is
//! read back (by its transaction id) before anyone reports a failure that
//! a caller would compensate. A statement that committed on its own, with
//! no transaction id known before its reply, is settled by inserting its
//! rows again (see [`resolve_rows`]).

use std::collections::HashSet;
use std::time::Duration;

use sqlx::PgPool;
use tokio::time::Instant;

use crate::group_commit::{insert_rows, EventRows};

/// SQLSTATE classes that describe the server's state, not the statement:
/// connection exception, insufficient resources, operator intervention
/// (shutdown, statement timeout), system error.
const TRANSIENT_CLASSES: [&str; 4] = ["08", "53", "57", "58"];

/// How often an unknown outcome is read back while it is still unknown.
const READ_BACK_INTERVAL: Duration = Duration::from_millis(50);

/// Whether `error` is a failure to reach or use the database rather than a
/// refusal of what was written.
pub(crate) fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| TRANSIENT_CLASSES.iter().any(|c| code.starts_with(c))),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        _ => false,
    }
}

/// Whether a failed COMMIT may have committed all the same: the server's
/// answer never arrived (an answered COMMIT that failed rolled back).
pub(crate) fn is_ambiguous_commit(error: &sqlx::Error) -> bool {
    !matches!(error, sqlx::Error::Database(_))
}

/// What became of a transaction whose COMMIT reply was lost.
pub(crate) enum Resolved {
    Committed,
    RolledBack,
    Unknown(Unresolved),
}

/// The outcome of a commit could not be learned in time.
#[derive(Debug, thiserror::Error)]
#[error("a COMMIT's reply was lost and its outcome could not be read back: {0}")]
pub struct Unresolved(String);

impl Unresolved {
    pub(crate) fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

/// Reads back whether the transaction `transaction_id` committed, on a
/// fresh connection, for at most `within`. A transaction still in progress
/// (its server process has not yet noticed the broken connection) is asked
/// about again until it ends.
pub(crate) async fn resolve(pool: &PgPool, transaction_id: i64, within: Duration) -> Resolved {
    let status = read_back(within, || async {
        let status =
            sqlx::query_scalar::<_, Option<String>>("SELECT pg_xact_status($1::text::xid8)")
                .bind(transaction_id.to_string())
                .fetch_one(pool)
                .await
                .map_err(|error| error.to_string())?;
        match status.as_deref() {
            Some("committed") => Ok(true),
            Some("aborted") => Ok(false),
            _ => Err(format!("transaction {transaction_id} is {status:?}")),
        }
    })
    .await;
    match status {
        Ok(true) => Resolved::Committed,
        Ok(false) => Resolved::RolledBack,
        Err(unresolved) => Resolved::Unknown(unresolved),
    }
}

/// Which of `rows` are in the store, for a statement that inserted them on
/// its own (no explicit transaction) and whose reply was lost; on a fresh
/// connection, for at most `within`.
///
/// The rows are inserted again with the same statement, which settles the
/// question whatever became of the first: its copy committed (each key is
/// taken: nothing is inserted), is still running on the server (the insert
/// waits on the key until it ends), or never ran (the rows are inserted
/// now, as they would have been, and the first can no longer add any). The
/// keys are the optimistic lock, so inserting again commits nothing a
/// second time. A key taken by another command stays lost; which rows are
/// ours is then read by their event ids.
pub(crate) async fn resolve_rows(
    pool: &PgPool,
    aggregate_type: &str,
    rows: &EventRows,
    within: Duration,
) -> Result<HashSet<(String, i64)>, Unresolved> {
    read_back(within, || async {
        let ours = async {
            let mut connection = pool.acquire().await?;
            let _ = insert_rows(&mut connection, aggregate_type, rows).await?;
            sqlx::query_as::<_, (String, i64)>(
                "SELECT aggregate_id, sequence FROM events WHERE event_id = ANY($1)",
            )
            .bind(&rows.event_id)
            .fetch_all(&mut *connection)
            .await
        }
        .await;
        ours.map(|ours| ours.into_iter().collect())
            .map_err(|error: sqlx::Error| error.to_string())
    })
    .await
}

/// Runs `attempt` until it answers, every [`READ_BACK_INTERVAL`], for at
/// most `within`; `Err` from an attempt says why the outcome is still
/// unknown, and the last such reason is the [`Unresolved`].
async fn read_back<T, F, Fut>(within: Duration, mut attempt: F) -> Result<T, Unresolved>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        let unknown = match tokio::time::timeout_at(deadline, attempt()).await {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(unknown)) => unknown,
            Err(_) => "the read-back timed out".to_owned(),
        };
        if Instant::now() + READ_BACK_INTERVAL >= deadline {
            return Err(Unresolved(unknown));
        }
        tokio::time::sleep(READ_BACK_INTERVAL).await;
    }
}
