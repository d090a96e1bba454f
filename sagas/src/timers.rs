//! The `saga_timers` table: schedule, claim, finish and defer timers.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use std::time::Duration;
use uuid::Uuid;

/// What a timer does when it fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TimerTask {
    /// The order's window ended: expire it (a no-op once paid or cancelled).
    OrderExpiry { order_id: String },
    /// The order ended: free its ticket (a no-op unless it holds it).
    ReleaseTicket { ticket_id: String, order_id: String },
    /// A reservation's deadline passed: free the ticket unless an order that
    /// is still alive holds it (covers an order that was never recorded).
    ReservationCheck { ticket_id: String, order_id: String },
    /// A payment may be unresolved: settle it by re-sending the same charge
    /// under the same idempotency key (Stripe answers with the original
    /// outcome, or makes the charge if the first request never arrived).
    PaymentRecovery {
        payment_id: String,
        order_id: String,
        token: String,
        idempotency_key: String,
        amount_cents: i64,
    },
}

impl TimerTask {
    /// The timer's id: one timer per task and subject.
    #[must_use]
    pub fn id(&self) -> String {
        match self {
            TimerTask::OrderExpiry { order_id } => format!("order-expiry:{order_id}"),
            TimerTask::ReleaseTicket { order_id, .. } => format!("release-ticket:{order_id}"),
            TimerTask::ReservationCheck {
                ticket_id,
                order_id,
            } => format!("reservation-check:{ticket_id}:{order_id}"),
            TimerTask::PaymentRecovery { payment_id, .. } => payment_recovery_id(payment_id),
        }
    }

    /// Every [`TimerTask::kind`], for metrics exported before any fires.
    pub const KINDS: [&'static str; 4] = [
        "order-expiry",
        "release-ticket",
        "reservation-check",
        "payment-recovery",
    ];

    /// A short name for logs and metrics.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            TimerTask::OrderExpiry { .. } => "order-expiry",
            TimerTask::ReleaseTicket { .. } => "release-ticket",
            TimerTask::ReservationCheck { .. } => "reservation-check",
            TimerTask::PaymentRecovery { .. } => "payment-recovery",
        }
    }
}

/// The id of a payment's recovery timer.
#[must_use]
pub fn payment_recovery_id(payment_id: &str) -> String {
    format!("payment-recovery:{payment_id}")
}

/// A timer to write: the task, when, and the trace it belongs to.
#[derive(Debug, Clone)]
pub struct NewTimer {
    pub task: TimerTask,
    pub due_at: DateTime<Utc>,
    pub correlation_id: Option<String>,
    pub traceparent: Option<String>,
}

/// A timer a worker claimed.
#[derive(Debug, Clone)]
pub struct ClaimedTimer {
    pub id: String,
    pub task: TimerTask,
    pub correlation_id: Option<String>,
    pub traceparent: Option<String>,
    /// How many times it was claimed, this claim included.
    pub attempts: i32,
    /// This claim's token: only its holder may fire, finish or defer the
    /// timer, and only while its lease runs (see [`hold`]).
    pub claim: Uuid,
    /// When the timer was scheduled (with the event that called for it).
    pub created_at: DateTime<Utc>,
}

/// id, payload, correlation id, traceparent, attempts, claim, created at.
type ClaimRow = (
    String,
    serde_json::Value,
    Option<String>,
    Option<String>,
    i32,
    Uuid,
    DateTime<Utc>,
);

/// Writes `timer` unless one with the same id exists (scheduling twice is a
/// no-op), on the caller's connection so it joins the caller's transaction.
pub async fn schedule(conn: &mut PgConnection, timer: &NewTimer) -> sqlx::Result<()> {
    let payload =
        serde_json::to_value(&timer.task).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let _ = sqlx::query(
        "INSERT INTO saga_timers (id, kind, due_at, payload, correlation_id, traceparent) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
    )
    .bind(timer.task.id())
    .bind(timer.task.kind())
    .bind(timer.due_at)
    .bind(payload)
    .bind(&timer.correlation_id)
    .bind(&timer.traceparent)
    .execute(conn)
    .await?;
    Ok(())
}

/// Claims up to `limit` due timers by pushing their `due_at` one `lease`
/// ahead, in one short statement, each under a fresh claim token. `SKIP
/// LOCKED` keeps workers from waiting on, or claiming, each other's rows.
pub async fn claim_due(
    pool: &PgPool,
    limit: i64,
    lease: Duration,
) -> sqlx::Result<Vec<ClaimedTimer>> {
    let rows: Vec<ClaimRow> = sqlx::query_as(
        "UPDATE saga_timers t \
             SET due_at = now() + make_interval(secs => $2), claimed_by = gen_random_uuid(), \
                 attempts = t.attempts + 1 \
             FROM (SELECT id FROM saga_timers WHERE due_at <= now() \
                   ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED) due \
             WHERE t.id = due.id \
             RETURNING t.id, t.payload, t.correlation_id, t.traceparent, t.attempts, \
                       t.claimed_by, t.created_at",
    )
    .bind(limit)
    .bind(lease.as_secs_f64())
    .fetch_all(pool)
    .await?;
    let mut claimed = Vec::with_capacity(rows.len());
    for (id, payload, correlation_id, traceparent, attempts, claim, created_at) in rows {
        match serde_json::from_value::<TimerTask>(payload) {
            Ok(task) => claimed.push(ClaimedTimer {
                id,
                task,
                correlation_id,
                traceparent,
                attempts,
                claim,
                created_at,
            }),
            // Left in place (it comes back after the lease) and reported,
            // rather than dropped: a newer worker version may understand it.
            Err(error) => tracing::error!(timer = %id, %error, "unreadable saga timer"),
        }
    }
    Ok(claimed)
}

/// Renews the lease of claim `claim` on timer `id` for another `lease`,
/// if the claim still holds and its lease has not run out: `false` means
/// another worker may have claimed the timer, and this one must not fire
/// it. Checked before firing (a batch can outlive its lease) and repeated
/// while the task runs (a task can too).
pub async fn hold(pool: &PgPool, id: &str, claim: Uuid, lease: Duration) -> sqlx::Result<bool> {
    let result = sqlx::query(
        "UPDATE saga_timers SET due_at = now() + make_interval(secs => $3) \
         WHERE id = $1 AND claimed_by = $2 AND due_at > now()",
    )
    .bind(id)
    .bind(claim)
    .bind(lease.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Removes a fired timer, if claim `claim` still holds it.
pub async fn finish(pool: &PgPool, id: &str, claim: Uuid) -> sqlx::Result<bool> {
    let result = sqlx::query("DELETE FROM saga_timers WHERE id = $1 AND claimed_by = $2")
        .bind(id)
        .bind(claim)
        .execute(pool)
        .await?;
    Ok(result.rows_affected() == 1)
}

/// Makes a claimed timer fire again at `due_at`.
pub async fn defer(
    pool: &PgPool,
    id: &str,
    claim: Uuid,
    due_at: DateTime<Utc>,
) -> sqlx::Result<bool> {
    let result = sqlx::query(
        "UPDATE saga_timers SET due_at = $3, claimed_by = NULL WHERE id = $1 AND claimed_by = $2",
    )
    .bind(id)
    .bind(claim)
    .bind(due_at)
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Removes the timer `id` whatever its claim (its work was done another
/// way, e.g. the payment it would recover settled in the request).
pub async fn cancel(pool: &PgPool, id: &str) -> sqlx::Result<()> {
    let _ = sqlx::query("DELETE FROM saga_timers WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Removes the timer `id` if it never fired (no worker ever claimed it):
/// `true` guarantees that its task was not and will not be run.
pub async fn cancel_unfired(pool: &PgPool, id: &str) -> sqlx::Result<bool> {
    let result = sqlx::query("DELETE FROM saga_timers WHERE id = $1 AND attempts = 0")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(result.rows_affected() == 1)
}

/// Timers of `kind` scheduled before `before` and still there.
pub async fn older_than(pool: &PgPool, kind: &str, before: DateTime<Utc>) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM saga_timers WHERE kind = $1 AND created_at < $2")
        .bind(kind)
        .bind(before)
        .fetch_one(pool)
        .await
}

/// Timers waiting to fire (due or not), for the pending-timers gauge.
pub async fn pending(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM saga_timers")
        .fetch_one(pool)
        .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn ids_are_one_per_task_and_subject() {
        let release = TimerTask::ReleaseTicket {
            ticket_id: "t".into(),
            order_id: "o".into(),
        };
        assert_eq!(release.id(), "release-ticket:o");
        assert_eq!(
            TimerTask::OrderExpiry {
                order_id: "o".into()
            }
            .id(),
            "order-expiry:o"
        );
        assert_ne!(
            TimerTask::ReservationCheck {
                ticket_id: "t".into(),
                order_id: "o".into()
            }
            .id(),
            TimerTask::ReservationCheck {
                ticket_id: "t".into(),
                order_id: "p".into()
            }
            .id()
        );
    }

    #[test]
    fn tasks_round_trip_through_their_stored_form() {
        let task = TimerTask::PaymentRecovery {
            payment_id: "p".into(),
            order_id: "o".into(),
            token: "tok_visa".into(),
            idempotency_key: "o:1".into(),
            amount_cents: 1_000,
        };
        let stored = serde_json::to_value(&task).unwrap();
        assert_eq!(stored["kind"], "payment-recovery");
        assert_eq!(serde_json::from_value::<TimerTask>(stored).unwrap(), task);
    }
}
