//! Events onto their views, in order and at most once, healing gaps from
//! the event store: a batch at a time, folded in memory ([`crate::rows`])
//! and written with one statement per table.

use std::collections::HashSet;

use sqlx::PgConnection;

use crate::decode::{AggregateKind, ProjectedEvent};
use crate::rows::store::{self, Lock, NewRows, Tables};
use crate::rows::Rows;
use crate::ProjectionError;

/// What applying one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The event followed the view's checkpoint and is now applied.
    Applied,
    /// The view already had it; nothing changed.
    Duplicate,
    /// The view lagged behind by this many events, read from the event
    /// store and applied first.
    Healed(usize),
}

/// Applies `event` on `conn` (inside the caller's transaction, if any):
/// [`apply_events`] of one.
pub async fn apply_event(
    conn: &mut PgConnection,
    event: &ProjectedEvent,
) -> Result<Applied, ProjectionError> {
    let applied = apply_events(conn, &[event]).await?;
    Ok(applied.first().copied().unwrap_or(Applied::Duplicate))
}

/// Applies `events`, in order, on `conn`, inside the caller's transaction,
/// which also commits the checkpoints: what each one did, in the same
/// order. All or nothing: an error leaves the caller's transaction to roll
/// back.
///
/// The rows the events continue are loaded and locked (one statement per
/// table), the events are folded onto them in memory, and the changed rows
/// are written back (one or two statements per table). An event further
/// ahead than its row's next one is a gap: the missing events are read from
/// the event store, converted exactly as the relay publishes them
/// ([`ticketing_relay::load_envelopes`]), and applied first. A gap is never
/// skipped: if the store lacks them too, the batch fails.
pub async fn apply_events(
    conn: &mut PgConnection,
    events: &[&ProjectedEvent],
) -> Result<Vec<Applied>, ProjectionError> {
    let tables = Tables::live();
    let mut folded = fold(conn, &tables, events).await?;
    let _ = store::flush(conn, &tables, NewRows::Insert, &mut folded.rows).await?;
    Ok(folded.outcomes)
}

/// [`apply_events`] in a transaction of its own on `conn` (which must not
/// be in one), committed before it returns: the live projector's batches.
///
/// A batch that loaded (so locked) no row and writes one view has one
/// statement to write, which then runs after the COMMIT, on its own: the
/// transaction never holds a transaction id while this process gets round
/// to the next round trip (the relay publishes nothing committed after the
/// oldest open one). A row another worker inserted meanwhile fails the
/// statement's check as raced, as inside the transaction; the rows it did
/// insert stay, each its aggregate's state at the checkpoint it records,
/// and the retried batch finds them and skips what they hold.
pub async fn apply_events_committed(
    conn: &mut PgConnection,
    events: &[&ProjectedEvent],
) -> Result<Vec<Applied>, ProjectionError> {
    let tables = Tables::live();
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let mut folded = fold(&mut tx, &tables, events).await?;
    if !folded.locked_any && folded.views == 1 {
        tx.commit().await?;
        let _ = store::flush(conn, &tables, NewRows::Insert, &mut folded.rows).await?;
    } else {
        let _ = store::flush(&mut tx, &tables, NewRows::Insert, &mut folded.rows).await?;
        tx.commit().await?;
    }
    Ok(folded.outcomes)
}

/// A batch folded onto its rows, not yet written.
struct Folded {
    outcomes: Vec<Applied>,
    rows: Rows,
    /// Whether any row was loaded (and so locked).
    locked_any: bool,
    /// How many views the batch touches.
    views: usize,
}

async fn fold(
    conn: &mut PgConnection,
    tables: &Tables,
    events: &[&ProjectedEvent],
) -> Result<Folded, ProjectionError> {
    let mut rows = Rows::default();
    let [tickets, orders, payments] = ids_by_kind(events);
    let views = [&tickets, &orders, &payments]
        .iter()
        .filter(|ids| !ids.is_empty())
        .count();
    store::load(
        conn,
        tables,
        Lock::ForUpdate,
        &mut rows,
        &tickets,
        &orders,
        &payments,
    )
    .await?;
    let locked_any =
        !(rows.tickets.is_empty() && rows.orders.is_empty() && rows.payments.is_empty());
    // `updated_at`: when the rows are changed, not when the batch began
    // waiting for their locks.
    rows.applied_at = Some(chrono::Utc::now());
    let mut outcomes = Vec::with_capacity(events.len());
    for &event in events {
        let last = rows
            .last_sequence(event.kind(), event.aggregate_id())
            .unwrap_or(0);
        let sequence = event.sequence();
        if sequence <= last {
            outcomes.push(Applied::Duplicate);
            continue;
        }
        let healed = heal(conn, &mut rows, event, last).await?;
        rows.apply(event.clone().into())?;
        outcomes.push(if healed > 0 {
            Applied::Healed(healed)
        } else {
            Applied::Applied
        });
    }
    Ok(Folded {
        outcomes,
        rows,
        locked_any,
        views,
    })
}

/// The aggregate ids the events touch, per view (tickets, orders,
/// payments), each once.
fn ids_by_kind(events: &[&ProjectedEvent]) -> [Vec<String>; 3] {
    let mut seen = HashSet::with_capacity(events.len());
    let mut ids: [Vec<String>; 3] = Default::default();
    for event in events {
        let (kind, id) = (event.kind(), event.aggregate_id());
        if seen.insert((kind, id)) {
            let slot = match kind {
                AggregateKind::Ticket => 0,
                AggregateKind::Order => 1,
                AggregateKind::Payment => 2,
            };
            ids[slot].push(id.to_owned());
        }
    }
    ids
}

/// Folds the events between the checkpoint `last` and `event` into `rows`,
/// read from the event store exactly as the relay publishes them; how many.
/// Every one must be there and apply: a gap is never skipped.
async fn heal(
    conn: &mut PgConnection,
    rows: &mut Rows,
    event: &ProjectedEvent,
    last: i64,
) -> Result<usize, ProjectionError> {
    let kind = event.kind();
    let id = event.aggregate_id();
    let (from, to) = (last + 1, event.sequence() - 1);
    if from > to {
        return Ok(0);
    }
    let payloads = ticketing_relay::load_envelopes(conn, kind.type_name(), id, from, to)
        .await
        .map_err(|source| ProjectionError::Heal {
            aggregate_type: kind.type_name(),
            aggregate_id: id.to_owned(),
            source: Box::new(source),
        })?;
    let mut expected = from;
    for payload in &payloads {
        let missing = ProjectedEvent::decode(kind, payload)?;
        if missing.sequence() != expected {
            break;
        }
        rows.apply(missing.into())?;
        expected += 1;
    }
    if expected <= to {
        return Err(ProjectionError::Unhealable {
            aggregate_type: kind.type_name(),
            aggregate_id: id.to_owned(),
            sequence: event.sequence(),
            missing: expected,
        });
    }
    tracing::info!(
        aggregate_type = kind.type_name(),
        aggregate_id = id,
        from,
        to,
        "healed a gap from the event store"
    );
    Ok(payloads.len())
}
