//! The read side checked against the event store, its source of truth.
//!
//! The topics are a transport, and a broker can lose what it acknowledged:
//! a restart without durable storage, an unclean leader election, a topic
//! deleted and recreated, retention removing what a stopped worker had not
//! read. Gap healing (`apply`) covers a lost event followed by a
//! later one of the same aggregate; nothing on the topics reveals a lost
//! *last* event (a ticket created once and never touched again). So the read
//! side also reads the store:
//!
//! - [`follow`]: each projection role follows the event store behind the
//!   relay. Every event the relay published more than a grace period ago
//!   must be in the views; the views are compared with the store's
//!   sequences for those events' aggregates (a cheap query, no payloads),
//!   and those behind are healed from the store through the live fold and
//!   write path. Its position is kept in `read_side_cursor`, advanced in the
//!   same transaction as the rows it heals.
//! - [`sweep`]: anti-entropy. A slow pass over every aggregate, by ranges
//!   of ids, compares each view's row with the store and heals what
//!   differs, including what the follower cannot see (a row deleted or
//!   restored by hand). `ticketing replay verify` runs the same comparison
//!   on demand.
//!
//! Healing is idempotent: a row already at or past an event is left as it
//! is, so the live stream and the store may deliver the same event in any
//! order.

pub mod follow;
pub mod sweep;

use sqlx::PgConnection;
use ticketing_relay::Cursor;

use crate::apply::{apply_events, Applied};
use crate::decode::{AggregateKind, ProjectedEvent};
use crate::ProjectionError;

/// The read side's `read_side_cursor` row.
const CURSOR_NAME: &str = "projections";

/// One aggregate's row to be brought up to `sequence` from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: AggregateKind,
    pub id: String,
    pub sequence: i64,
}

impl AggregateKind {
    /// Every projected aggregate type, in the order their views are locked.
    pub const ALL: [AggregateKind; 3] = [
        AggregateKind::Ticket,
        AggregateKind::Order,
        AggregateKind::Payment,
    ];

    /// Its read-model table.
    pub fn view(self) -> &'static str {
        match self {
            AggregateKind::Ticket => "ticket_views",
            AggregateKind::Order => "order_views",
            AggregateKind::Payment => "payment_views",
        }
    }

    /// The kind whose `events.aggregate_type` is `name`.
    pub fn of_type_name(name: &str) -> Option<AggregateKind> {
        Self::ALL.into_iter().find(|kind| kind.type_name() == name)
    }
}

/// Brings each target's row up to its sequence, reading the events from the
/// store exactly as the relay publishes them and applying them through the
/// live path ([`apply_events`]: the sequence guard, the fold, the set-based
/// write), inside the caller's transaction. Returns how many events were
/// applied (0 when every row was already there).
pub(crate) async fn heal(
    conn: &mut PgConnection,
    targets: &[Target],
) -> Result<u64, ProjectionError> {
    let mut events = Vec::with_capacity(targets.len());
    for target in targets {
        let kind = target.kind;
        let payloads = ticketing_relay::load_envelopes(
            conn,
            kind.type_name(),
            &target.id,
            target.sequence,
            target.sequence,
        )
        .await
        .map_err(|source| ProjectionError::Heal {
            aggregate_type: kind.type_name(),
            aggregate_id: target.id.clone(),
            source: Box::new(source),
        })?;
        let Some(payload) = payloads.first() else {
            return Err(ProjectionError::Unhealable {
                aggregate_type: kind.type_name(),
                aggregate_id: target.id.clone(),
                sequence: target.sequence,
                missing: target.sequence,
            });
        };
        events.push(ProjectedEvent::decode(kind, payload)?);
    }
    let events: Vec<&ProjectedEvent> = events.iter().collect();
    let applied = apply_events(conn, &events).await?;
    Ok(applied
        .into_iter()
        .map(|applied| match applied {
            Applied::Duplicate => 0,
            Applied::Applied => 1,
            Applied::Healed(n) => 1 + u64::try_from(n).unwrap_or(u64::MAX),
        })
        .sum())
}

/// The read side's position in the store, if it has one.
pub async fn read_side_cursor(conn: &mut PgConnection) -> sqlx::Result<Option<Cursor>> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT transaction_id::text::bigint, global_position FROM read_side_cursor WHERE name = $1",
    )
    .bind(CURSOR_NAME)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(transaction_id, global_position)| Cursor {
        transaction_id,
        global_position,
    }))
}

/// Takes the transaction-level advisory lock `key` if no other session
/// holds it (it takes no transaction id); `false` if one does.
pub(crate) async fn try_claim(conn: &mut PgConnection, key: i64) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(key)
        .fetch_one(conn)
        .await
}

/// The advisory lock of the one worker following the store at a time.
const FOLLOW_LOCK: i64 = 0x0000_666f_6c6c_6f77; // "follow"

/// Claims the read side's position until the transaction ends, creating it
/// at the start of the store if missing; `None` if another worker holds it
/// (it is following the store right now).
///
/// Claimed with an advisory lock, not by locking the row: a row lock takes
/// a transaction id, and the relay publishes nothing committed after the
/// oldest transaction holding one, so each step would hold back
/// publication for as long as it reads the store and the views.
async fn claim_cursor(conn: &mut PgConnection) -> sqlx::Result<Option<Cursor>> {
    if !try_claim(&mut *conn, FOLLOW_LOCK).await? {
        return Ok(None);
    }
    if let Some(cursor) = read_side_cursor(&mut *conn).await? {
        return Ok(Some(cursor));
    }
    let _ = sqlx::query(
        "INSERT INTO read_side_cursor (name, transaction_id, global_position) \
         VALUES ($1, '0'::xid8, 0) ON CONFLICT (name) DO NOTHING",
    )
    .bind(CURSOR_NAME)
    .execute(&mut *conn)
    .await?;
    read_side_cursor(conn).await
}

async fn save_cursor(conn: &mut PgConnection, cursor: Cursor) -> sqlx::Result<()> {
    let _ = sqlx::query(
        "UPDATE read_side_cursor SET transaction_id = $2::bigint::text::xid8, \
         global_position = $3, updated_at = now() WHERE name = $1",
    )
    .bind(CURSOR_NAME)
    .bind(cursor.transaction_id)
    .bind(cursor.global_position)
    .execute(conn)
    .await?;
    Ok(())
}

/// The `last_sequence` of each of `ids` in `kind`'s view (0 when it has no
/// row), in the order of `ids`.
async fn view_sequences(
    conn: &mut PgConnection,
    kind: AggregateKind,
    ids: &[String],
) -> sqlx::Result<Vec<i64>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // One primary-key lookup per id, whatever the planner believes: as a
    // join, PostgreSQL without fresh statistics hashed the whole view (a
    // sequential scan of 470,000 rows, 125 ms) to find 5,000 of them.
    let sql = format!(
        "SELECT coalesce((SELECT v.last_sequence FROM {} v WHERE v.id = w.id), 0) \
         FROM unnest($1::text[]) WITH ORDINALITY AS w(id, n) ORDER BY w.n",
        kind.view()
    );
    // Planned per execution, as every range and batch query of the read
    // side: a prepared statement switches to a generic plan, and one made
    // while the tables were empty scans them whole once they have grown.
    sqlx::query_scalar(&sql)
        .persistent(false)
        .bind(ids)
        .fetch_all(conn)
        .await
}
