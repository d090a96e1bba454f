//! The durable checkpoints of replays (`replay_checkpoints`): how far a
//! rebuild or republish got, saved in the same transaction as its work (or
//! after the broker acknowledged it), so an interrupted run resumes.

use sqlx::PgConnection;

use crate::outbox::Cursor;

/// A replay's saved progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayCheckpoint {
    /// The last event done.
    pub cursor: Cursor,
    /// Events done so far.
    pub done: u64,
}

/// The checkpoint of `name`, if it was started with the same `options`;
/// `None` if it never ran or ran with other options.
pub async fn load_checkpoint(
    conn: &mut PgConnection,
    name: &str,
    options: &str,
) -> sqlx::Result<Option<ReplayCheckpoint>> {
    let row: Option<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT options, transaction_id::text::bigint, global_position, done \
         FROM replay_checkpoints WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(conn)
    .await?;
    Ok(row.filter(|(saved, ..)| saved == options).map(
        |(_, transaction_id, global_position, done)| ReplayCheckpoint {
            cursor: Cursor {
                transaction_id,
                global_position,
            },
            done: u64::try_from(done).unwrap_or_default(),
        },
    ))
}

/// Records that `name` (run with `options`) got to `checkpoint`.
pub async fn save_checkpoint(
    conn: &mut PgConnection,
    name: &str,
    options: &str,
    checkpoint: &ReplayCheckpoint,
) -> sqlx::Result<()> {
    let _ = sqlx::query(
        "INSERT INTO replay_checkpoints (name, options, transaction_id, global_position, done) \
         VALUES ($1, $2, $3::bigint::text::xid8, $4, $5) \
         ON CONFLICT (name) DO UPDATE SET options = EXCLUDED.options, \
         transaction_id = EXCLUDED.transaction_id, global_position = EXCLUDED.global_position, \
         done = EXCLUDED.done, updated_at = now(), \
         started_at = CASE WHEN replay_checkpoints.options = EXCLUDED.options \
                      THEN replay_checkpoints.started_at ELSE now() END",
    )
    .bind(name)
    .bind(options)
    .bind(checkpoint.cursor.transaction_id)
    .bind(checkpoint.cursor.global_position)
    .bind(i64::try_from(checkpoint.done).unwrap_or(i64::MAX))
    .execute(conn)
    .await?;
    Ok(())
}

/// Forgets `name`'s progress: it finished.
pub async fn clear_checkpoint(conn: &mut PgConnection, name: &str) -> sqlx::Result<()> {
    let _ = sqlx::query("DELETE FROM replay_checkpoints WHERE name = $1")
        .bind(name)
        .execute(conn)
        .await?;
    Ok(())
}
