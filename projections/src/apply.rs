//! One event onto its view, in order and at most once, healing gaps from
//! the event store.

use sqlx::PgConnection;

use crate::decode::ProjectedEvent;
use crate::{views, ProjectionError};

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

/// Applies `event` on `conn` (inside the caller's transaction, which also
/// commits the checkpoint). The fast path is one conditional statement; only
/// when it matches no row is the view locked to tell a duplicate from a gap.
pub async fn apply_event(
    conn: &mut PgConnection,
    event: &ProjectedEvent,
) -> Result<Applied, ProjectionError> {
    if views::apply(conn, event).await? {
        return Ok(Applied::Applied);
    }
    let kind = event.kind();
    let id = event.aggregate_id();
    let sequence = event.sequence();
    let last = views::lock_checkpoint(conn, kind, id).await?.unwrap_or(0);
    if sequence <= last {
        return Ok(Applied::Duplicate);
    }
    let healed = heal(conn, event, last).await?;
    if !views::apply(conn, event).await? {
        return Err(ProjectionError::Inconsistent {
            aggregate_type: kind.type_name(),
            aggregate_id: id.to_owned(),
            event_type: event.event_type(),
            sequence,
            last_sequence: sequence - 1,
        });
    }
    if healed > 0 {
        tracing::info!(
            aggregate_type = kind.type_name(),
            aggregate_id = id,
            from = last + 1,
            to = sequence - 1,
            "healed a gap from the event store"
        );
        return Ok(Applied::Healed(healed));
    }
    Ok(Applied::Applied)
}

/// Applies the events between the checkpoint `last` and `event`, read from
/// the event store exactly as the relay publishes them. Every one must be
/// there and apply: a gap is never skipped.
async fn heal(
    conn: &mut PgConnection,
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
        if !views::apply(conn, &missing).await? {
            return Err(ProjectionError::Inconsistent {
                aggregate_type: kind.type_name(),
                aggregate_id: id.to_owned(),
                event_type: missing.event_type(),
                sequence: expected,
                last_sequence: expected - 1,
            });
        }
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
    Ok(payloads.len())
}
