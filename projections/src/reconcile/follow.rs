//! Following the event store behind the relay (see [`super`]).
//!
//! Each step reads the next events after the read side's cursor, up to what
//! the relay had published a grace period ago (events published since may
//! simply not have arrived yet), as `(aggregate, sequence)` pairs only;
//! compares each aggregate's highest sequence with its view row; heals the
//! rows behind from the store; and moves the cursor, all in one
//! transaction. One worker follows at a time (the cursor row is locked with
//! `SKIP LOCKED`); the others find it taken and wait for the next tick.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection, PgPool};
use ticketing_eventstore::retry::Backoff;
use ticketing_relay::Cursor;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{claim_cursor, heal, save_cursor, view_sequences, Target};
use crate::dead_letter::error_chain;
use crate::decode::AggregateKind;
use crate::{ProjectionError, ProjectionMetrics};

/// How the read side follows the store.
#[derive(Debug, Clone)]
pub struct FollowConfig {
    /// How long after the relay published an event the views must have
    /// it; only then is its absence a loss rather than lag.
    pub grace: Duration,
    /// Pause between steps once caught up.
    pub interval: Duration,
    /// Most events compared per step (one transaction).
    pub batch: i64,
}

impl Default for FollowConfig {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(5),
            interval: Duration::from_secs(1),
            batch: 5_000,
        }
    }
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FollowReport {
    /// Events compared.
    pub checked: u64,
    /// Aggregates whose view was behind the store.
    pub behind: u64,
    /// Events applied from the store.
    pub healed: u64,
    /// Aggregates that could not be healed (an event the views cannot
    /// apply); logged, left to the sweep and `replay verify`.
    pub unhealable: u64,
    /// Whether more events are due at once (the step was full).
    pub more: bool,
}

/// Runs the follower until `shutdown`. `kick` makes it look at once (a
/// loss was detected on the transport).
pub(crate) fn spawn(
    pool: PgPool,
    config: FollowConfig,
    metrics: Arc<ProjectionMetrics>,
    kick: Arc<Notify>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut published = PublishedHistory::default();
        let mut failures = 0u32;
        loop {
            let bound = match current_bound(&pool, &mut published, config.grace).await {
                Ok(bound) => bound,
                Err(error) => {
                    tracing::debug!(error.message = %error, "cannot read the relay's position");
                    None
                }
            };
            let mut more = false;
            if let Some((bound, published)) = bound {
                match follow_step(&pool, bound, published, config.batch).await {
                    Ok(report) => {
                        failures = 0;
                        metrics.record_followed(&report);
                        more = report.more;
                    }
                    Err(error) => {
                        failures = failures.saturating_add(1);
                        tracing::warn!(
                            error.cause_chain = %error_chain(&error),
                            error.message = %error,
                            "the read side could not check itself against the event store"
                        );
                    }
                }
            }
            // Behind by more than a step: go on at once, yielding to the
            // live path between steps.
            let pause = if more {
                Duration::ZERO
            } else if failures > 0 {
                Backoff::new(config.interval, Duration::from_secs(30)).delay(failures)
            } else {
                config.interval
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = kick.notified() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
    })
}

/// The relay's published position over time, to know what it had published
/// `grace` ago.
#[derive(Debug, Default)]
struct PublishedHistory {
    samples: VecDeque<(Instant, Cursor)>,
}

impl PublishedHistory {
    /// Records `now`'s position; the newest one at least `grace` old.
    fn bound(&mut self, now: Instant, cursor: Cursor, grace: Duration) -> Option<Cursor> {
        self.samples.push_back((now, cursor));
        let old_enough = |at: &Instant| now.saturating_duration_since(*at) >= grace;
        while self.samples.len() > 1 && self.samples.get(1).is_some_and(|(at, _)| old_enough(at)) {
            let _ = self.samples.pop_front();
        }
        self.samples
            .front()
            .filter(|(at, _)| old_enough(at))
            .map(|&(_, cursor)| cursor)
    }
}

/// What the relay had published `grace` ago, and what it has published
/// now.
async fn current_bound(
    pool: &PgPool,
    published: &mut PublishedHistory,
    grace: Duration,
) -> sqlx::Result<Option<(Cursor, Cursor)>> {
    let mut conn = pool.acquire().await?;
    let Some(cursor) = ticketing_relay::published_cursor(&mut conn).await? else {
        return Ok(None);
    };
    Ok(published
        .bound(Instant::now(), cursor, grace)
        .map(|bound| (bound, cursor)))
}

/// One step: the events after the read side's cursor up to `bound`, at most
/// `batch` of them, checked and healed, and the cursor moved past them.
/// `published` is the relay's position now (`bound` is an older one).
pub async fn follow_step(
    pool: &PgPool,
    bound: Cursor,
    published: Cursor,
    batch: i64,
) -> Result<FollowReport, ProjectionError> {
    let mut tx = pool.begin().await?;
    let Some(mut cursor) = claim_cursor(&mut tx).await? else {
        return Ok(FollowReport::default());
    };
    if cursor > published {
        // Only a store restored from a backup (its positions rebased) or a
        // relay cursor reset moves the relay behind the read side: check
        // everything again rather than skip what is now below the cursor.
        tracing::warn!(
            ?cursor,
            ?published,
            "the read side's position is ahead of the relay's; checking the store from the start"
        );
        cursor = Cursor::default();
    } else if cursor >= bound {
        // Another worker, whose view of the relay is more recent, followed
        // further: nothing is due here yet. Ended now, not when the
        // transaction is dropped: the claim is held until then.
        tx.rollback().await?;
        return Ok(FollowReport::default());
    }
    let events = events_between(&mut tx, cursor, bound, batch).await?;
    let mut report = FollowReport {
        checked: u64::try_from(events.len()).unwrap_or(u64::MAX),
        more: i64::try_from(events.len()).unwrap_or(i64::MAX) >= batch,
        ..FollowReport::default()
    };
    let next = events.last().map_or(bound, |event| event.cursor);
    let behind = behind(&mut tx, &events).await?;
    report.behind = u64::try_from(behind.len()).unwrap_or(u64::MAX);
    if !behind.is_empty() {
        tracing::warn!(
            aggregates = behind.len(),
            first = ?behind.first(),
            "views behind events the relay published a while ago: healing from the event store \
             (the broker lost messages, or the projection is far behind)"
        );
        let (healed, failed) = heal_each_alone_on_failure(&mut tx, &behind).await?;
        report.healed = healed;
        report.unhealable = failed;
    }
    save_cursor(&mut tx, next).await?;
    tx.commit().await?;
    Ok(report)
}

/// Heals `targets` together; should that fail for a reason other than the
/// database, each alone, so one aggregate whose events cannot apply (a
/// poison event, dead-lettered on the live path) does not hold up the
/// rest. Returns the events applied and the aggregates left unhealed.
pub(super) async fn heal_each_alone_on_failure(
    conn: &mut PgConnection,
    targets: &[Target],
) -> Result<(u64, u64), ProjectionError> {
    let mut together = conn.begin().await?;
    match heal(&mut together, targets).await {
        Ok(healed) => {
            together.commit().await?;
            return Ok((healed, 0));
        }
        Err(error) if error.is_transient() => return Err(error),
        Err(_) => together.rollback().await?,
    }
    let (mut healed, mut failed) = (0, 0);
    for target in targets {
        let mut alone = conn.begin().await?;
        match heal(&mut alone, std::slice::from_ref(target)).await {
            Ok(n) => {
                alone.commit().await?;
                healed += n;
            }
            Err(error) if error.is_transient() => return Err(error),
            Err(error) => {
                alone.rollback().await?;
                failed += 1;
                tracing::error!(
                    aggregate_type = target.kind.type_name(),
                    aggregate_id = target.id,
                    sequence = target.sequence,
                    error.cause_chain = %error_chain(&error),
                    "cannot heal this view row from the event store"
                );
            }
        }
    }
    Ok((healed, failed))
}

/// An event's aggregate, sequence and position, without its payload.
#[derive(Debug, sqlx::FromRow)]
struct Pointer {
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    transaction_id: i64,
    global_position: i64,
    #[sqlx(skip)]
    cursor: Cursor,
}

async fn events_between(
    conn: &mut PgConnection,
    after: Cursor,
    upto: Cursor,
    limit: i64,
) -> sqlx::Result<Vec<Pointer>> {
    // Ordered by the table's columns, so the relay's index serves it.
    let rows: Vec<Pointer> = sqlx::query_as(
        "SELECT aggregate_type, aggregate_id, sequence, \
                transaction_id::text::bigint AS transaction_id, global_position \
         FROM events \
         WHERE (transaction_id, global_position) > ($1::bigint::text::xid8, $2) \
           AND (transaction_id, global_position) <= ($3::bigint::text::xid8, $4) \
         ORDER BY events.transaction_id, events.global_position LIMIT $5",
    )
    // Planned per execution (see `super::view_sequences`).
    .persistent(false)
    .bind(after.transaction_id)
    .bind(after.global_position)
    .bind(upto.transaction_id)
    .bind(upto.global_position)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| Pointer {
            cursor: Cursor {
                transaction_id: row.transaction_id,
                global_position: row.global_position,
            },
            ..row
        })
        .collect())
}

/// The aggregates of `events` whose view row is below their highest
/// sequence among them.
async fn behind(
    conn: &mut PgConnection,
    events: &[Pointer],
) -> Result<Vec<Target>, ProjectionError> {
    let mut highest: HashMap<(AggregateKind, &str), i64> = HashMap::new();
    for event in events {
        // Another aggregate type has no view here.
        let Some(kind) = AggregateKind::of_type_name(&event.aggregate_type) else {
            continue;
        };
        let entry = highest
            .entry((kind, event.aggregate_id.as_str()))
            .or_default();
        *entry = (*entry).max(event.sequence);
    }
    let mut targets = Vec::new();
    for kind in AggregateKind::ALL {
        let (ids, sequences): (Vec<String>, Vec<i64>) = highest
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|((_, id), &sequence)| ((*id).to_owned(), sequence))
            .unzip();
        let views = view_sequences(conn, kind, &ids).await?;
        for ((id, sequence), view) in ids.into_iter().zip(sequences).zip(views) {
            if view < sequence {
                targets.push(Target { kind, id, sequence });
            }
        }
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(position: i64) -> Cursor {
        Cursor {
            transaction_id: 1,
            global_position: position,
        }
    }

    #[test]
    fn the_bound_is_what_the_relay_had_published_a_grace_period_ago() {
        let grace = Duration::from_secs(5);
        let start = Instant::now();
        let mut history = PublishedHistory::default();
        assert_eq!(history.bound(start, at(10), grace), None);
        let later = |secs| start + Duration::from_secs(secs);
        assert_eq!(history.bound(later(3), at(20), grace), None);
        assert_eq!(history.bound(later(5), at(30), grace), Some(at(10)));
        assert_eq!(history.bound(later(9), at(40), grace), Some(at(20)));
        assert_eq!(history.samples.len(), 3);
    }

    #[test]
    fn with_no_grace_the_bound_is_the_relays_position_now() {
        let mut history = PublishedHistory::default();
        let now = Instant::now();
        assert_eq!(history.bound(now, at(7), Duration::ZERO), Some(at(7)));
    }
}
