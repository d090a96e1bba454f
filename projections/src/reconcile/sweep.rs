//! Anti-entropy: each view compared with the event store, aggregate by
//! aggregate, by ranges of ids (see [`super`]).
//!
//! For a range, the store gives each aggregate's highest sequence (all of
//! them, and those at or before a bound: the events the views must have by
//! now) and the view gives its rows' `last_sequence`. A row is
//! - **missing** or **behind** when it is below the bounded sequence;
//! - **ahead** when it is past every event in the store (the store was
//!   restored from an older backup, or the row was edited by hand);
//! - an **orphan** when the store has no event of its aggregate at all.
//!
//! A row that differs is not trusted in any column: it is folded again
//! from the aggregate's first event (an orphan is removed).
//!
//! A row between the two sequences is lag, not a difference.
//! The sweep runs in every projection role, one range at a time with a
//! pause between ranges, at most one worker at a time (a transaction-level
//! advisory lock); `ticketing replay verify` compares every range at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use ticketing_relay::Cursor;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::follow::heal_each_alone_on_failure;
use super::{read_side_cursor, try_claim, Target};
use crate::dead_letter::error_chain;
use crate::decode::AggregateKind;
use crate::{ProjectionError, ProjectionMetrics};

/// Held while one worker sweeps, so that several do not sweep the same
/// ranges ("sweep" in ASCII).
const SWEEP_LOCK: i64 = 0x0073_7765_6570;

/// How the anti-entropy sweep paces itself.
#[derive(Debug, Clone)]
pub struct SweepConfig {
    /// Pause between two ranges; zero turns the sweep off.
    pub interval: Duration,
    /// Aggregates compared per range.
    pub batch: i64,
    /// Consumer lag (messages, all partitions) above which a range waits:
    /// while the worker catches up, the sweep's reads would take CPU and
    /// PostgreSQL time from the events buyers are waiting for.
    pub yield_lag: i64,
    /// Longest a range waits for the lag to fall, so that a divergence is
    /// still found under a load that never ends.
    pub max_defer: Duration,
}

impl Default for SweepConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(2),
            batch: 1_000,
            yield_lag: 100,
            max_defer: Duration::from_secs(30),
        }
    }
}

/// Whether the next range runs now or yields to the live projection.
#[derive(Debug, Default)]
struct Yielding {
    /// Since when ranges have been waiting.
    since: Option<Instant>,
}

impl Yielding {
    fn may_sweep(&mut self, lag: i64, config: &SweepConfig, now: Instant) -> bool {
        let since = *self.since.get_or_insert(now);
        let run = lag <= config.yield_lag || now.duration_since(since) >= config.max_defer;
        if run {
            self.since = None;
        }
        run
    }
}

/// How a view row differs from the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DifferenceKind {
    Missing,
    Behind,
    Ahead,
    Orphan,
}

impl DifferenceKind {
    pub const ALL: [DifferenceKind; 4] = [
        DifferenceKind::Missing,
        DifferenceKind::Behind,
        DifferenceKind::Ahead,
        DifferenceKind::Orphan,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DifferenceKind::Missing => "missing",
            DifferenceKind::Behind => "behind",
            DifferenceKind::Ahead => "ahead",
            DifferenceKind::Orphan => "orphan",
        }
    }
}

/// One view row that differs from the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub view: &'static str,
    pub aggregate_id: String,
    pub kind: DifferenceKind,
    /// The row's `last_sequence`, if it has a row.
    pub view_sequence: Option<i64>,
    /// The store's highest sequence at or before the bound, if any.
    pub store_sequence: Option<i64>,
    #[serde(skip)]
    aggregate: AggregateKind,
}

/// One range compared.
#[derive(Debug, Clone, Default)]
pub struct RangeReport {
    pub compared: u64,
    pub differences: Vec<Difference>,
    /// The last id of the range; `None` when it reached the end.
    pub next_after: Option<String>,
}

/// Compares the aggregates of `kind` with ids after `after` (at most
/// `limit` of them) with the view; `bound` is how far the views must have
/// got in the store.
pub async fn compare_range(
    conn: &mut PgConnection,
    kind: AggregateKind,
    after: &str,
    limit: i64,
    bound: Cursor,
) -> sqlx::Result<RangeReport> {
    // The range's ids are walked one primary-key probe at a time
    // (aggregate_type, aggregate_id, sequence), then each aggregate's
    // sequences read by its key, so the range costs the same whatever the
    // planner believes about `events`. Seen under load as one grouped scan:
    // without statistics (no analyze since the table was small) PostgreSQL
    // hashed every aggregate after `after` (470,000, spilling to disk)
    // before keeping the first 1,000, every 2 s.
    let store: Vec<(String, i64, Option<i64>)> = sqlx::query_as(
        "WITH RECURSIVE ids (id, n) AS ( \
             (SELECT aggregate_id, 1::bigint FROM events \
              WHERE aggregate_type = $1 AND aggregate_id > $2 \
              ORDER BY aggregate_id LIMIT 1) \
           UNION ALL \
             SELECT next.aggregate_id, ids.n + 1 FROM ids CROSS JOIN LATERAL ( \
                 SELECT aggregate_id FROM events \
                 WHERE aggregate_type = $1 AND aggregate_id > ids.id \
                 ORDER BY aggregate_id LIMIT 1) AS next \
             WHERE ids.n < $5) \
         SELECT ids.id, s.last, s.bounded FROM ids CROSS JOIN LATERAL ( \
             SELECT max(sequence) AS last, \
                    max(sequence) FILTER (WHERE (transaction_id, global_position) \
                                            <= ($3::bigint::text::xid8, $4)) AS bounded \
             FROM events WHERE aggregate_type = $1 AND aggregate_id = ids.id) AS s \
         ORDER BY ids.id",
    )
    // Planned per execution too (see `super::view_sequences`).
    .persistent(false)
    .bind(kind.type_name())
    .bind(after)
    .bind(bound.transaction_id)
    .bind(bound.global_position)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let full = i64::try_from(store.len()).unwrap_or(i64::MAX) >= limit;
    let upper = if full {
        store.last().map(|(id, ..)| id.clone())
    } else {
        None
    };
    // The view's rows over the same range: the store's ids, and any row
    // between them (or after the last) that the store lacks.
    let views: Vec<(String, i64)> = match &upper {
        Some(upper) => {
            let sql = format!(
                "SELECT id, last_sequence FROM {} WHERE id > $1 AND id <= $2 ORDER BY id",
                kind.view()
            );
            sqlx::query_as(&sql)
                .persistent(false)
                .bind(after)
                .bind(upper)
                .fetch_all(&mut *conn)
                .await?
        }
        None => {
            let sql = format!(
                "SELECT id, last_sequence FROM {} WHERE id > $1 ORDER BY id LIMIT $2",
                kind.view()
            );
            sqlx::query_as(&sql)
                .persistent(false)
                .bind(after)
                .bind(limit)
                .fetch_all(&mut *conn)
                .await?
        }
    };
    // Past the store's end, the view's own rows bound the range.
    let next_after = upper.or_else(|| {
        (i64::try_from(views.len()).unwrap_or(i64::MAX) >= limit)
            .then(|| views.last().map(|(id, _)| id.clone()))
            .flatten()
    });
    let mut report = RangeReport {
        next_after,
        ..RangeReport::default()
    };
    let (mut s, mut v) = (store.into_iter().peekable(), views.into_iter().peekable());
    loop {
        let (store_row, view_row) = match (s.peek(), v.peek()) {
            (None, None) => break,
            (Some((sid, ..)), Some((vid, _))) if sid == vid => (s.next(), v.next()),
            (Some((sid, ..)), Some((vid, _))) if sid < vid => (s.next(), None),
            (Some(_), None) => (s.next(), None),
            (_, Some(_)) => (None, v.next()),
        };
        report.compared += 1;
        if let Some(difference) = difference(kind, store_row, view_row) {
            report.differences.push(difference);
        }
    }
    report.differences = confirmed(conn, kind, report.differences).await?;
    Ok(report)
}

/// `differences` without the orphans and rows ahead that a read of the
/// store taken after the views' no longer finds so.
///
/// The store was read before the views, each in a statement of its own: a
/// ticket whose event committed in between, and whose row the projector
/// wrote at once, looked like a row the store lacks, and was deleted with
/// nothing to heal it from (a client's read of its new ticket found 404).
/// Every event a row read earlier reflects is in this later read.
async fn confirmed(
    conn: &mut PgConnection,
    kind: AggregateKind,
    differences: Vec<Difference>,
) -> sqlx::Result<Vec<Difference>> {
    let doubtful: Vec<&str> = differences
        .iter()
        .filter(|d| matches!(d.kind, DifferenceKind::Orphan | DifferenceKind::Ahead))
        .map(|d| d.aggregate_id.as_str())
        .collect();
    if doubtful.is_empty() {
        return Ok(differences);
    }
    let latest: HashMap<String, Option<i64>> = sqlx::query_as(
        "SELECT m.id, (SELECT max(sequence) FROM events \
                       WHERE aggregate_type = $1 AND aggregate_id = m.id) \
         FROM unnest($2::text[]) AS m(id)",
    )
    .persistent(false)
    .bind(kind.type_name())
    .bind(&doubtful)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .collect();
    Ok(differences
        .into_iter()
        .filter(|d| {
            let latest = latest.get(&d.aggregate_id).copied().flatten();
            match d.kind {
                DifferenceKind::Orphan => latest.is_none(),
                DifferenceKind::Ahead => d.view_sequence > latest,
                DifferenceKind::Missing | DifferenceKind::Behind => true,
            }
        })
        .collect())
}

fn difference(
    kind: AggregateKind,
    store: Option<(String, i64, Option<i64>)>,
    view: Option<(String, i64)>,
) -> Option<Difference> {
    let (id, all, bounded) = match &store {
        Some((id, all, bounded)) => (id.clone(), Some(*all), *bounded),
        None => (view.as_ref()?.0.clone(), None, None),
    };
    let row = view.map(|(_, sequence)| sequence);
    let found = match (row, all, bounded) {
        (Some(_), None, _) => DifferenceKind::Orphan,
        (None, _, Some(_)) => DifferenceKind::Missing,
        (Some(row), Some(all), _) if row > all => DifferenceKind::Ahead,
        (Some(row), _, Some(bounded)) if row < bounded => DifferenceKind::Behind,
        _ => return None,
    };
    Some(Difference {
        view: kind.view(),
        aggregate_id: id,
        kind: found,
        view_sequence: row,
        store_sequence: bounded,
        aggregate: kind,
    })
}

/// Repairs `differences` in the caller's transaction: each row is removed
/// and folded again from the store (see the module docs). Returns the
/// events applied and the rows that could not be healed.
pub async fn repair(
    conn: &mut PgConnection,
    differences: &[Difference],
) -> Result<(u64, u64), ProjectionError> {
    let mut targets = Vec::new();
    for difference in differences {
        let sql = format!("DELETE FROM {} WHERE id = $1", difference.view);
        let _ = sqlx::query(&sql)
            .bind(&difference.aggregate_id)
            .execute(&mut *conn)
            .await?;
        if let Some(sequence) = difference.store_sequence {
            targets.push(Target {
                kind: difference.aggregate,
                id: difference.aggregate_id.clone(),
                sequence,
            });
        }
    }
    if targets.is_empty() {
        return Ok((0, 0));
    }
    heal_each_alone_on_failure(conn, &targets).await
}

/// What [`verify`] found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// Aggregates (and orphan rows) compared.
    pub compared: u64,
    pub differences: Vec<Difference>,
    /// Events applied by `--repair`.
    pub healed_events: u64,
    /// Rows `--repair` could not heal (an event the views cannot apply).
    pub unhealable: u64,
}

/// Compares every view with the store up to what the relay has published
/// (every event, if it never published), `batch` aggregates at a time, and
/// with `repair` heals each range's differences as it goes.
pub async fn verify(
    pool: &PgPool,
    batch: i64,
    repair_differences: bool,
) -> Result<VerifyReport, ProjectionError> {
    let mut conn = pool.acquire().await?;
    let bound = ticketing_relay::published_cursor(&mut conn)
        .await?
        .unwrap_or(Cursor {
            transaction_id: i64::MAX,
            global_position: i64::MAX,
        });
    drop(conn);
    let mut report = VerifyReport::default();
    for kind in AggregateKind::ALL {
        let mut after = String::new();
        loop {
            let mut tx = pool.begin().await?;
            let range = compare_range(&mut tx, kind, &after, batch, bound).await?;
            report.compared += range.compared;
            if repair_differences && !range.differences.is_empty() {
                let (healed, failed) = repair(&mut tx, &range.differences).await?;
                report.healed_events += healed;
                report.unhealable += failed;
            }
            tx.commit().await?;
            report.differences.extend(range.differences);
            match range.next_after {
                Some(next) => after = next,
                None => break,
            }
        }
    }
    Ok(report)
}

/// Runs the sweep until `shutdown`: one range every `interval`, bounded by
/// the read side's own position in the store (what the follower has
/// confirmed), healing what differs; while the consumer lags by more than
/// `yield_lag`, a range waits (at most `max_defer`).
pub(crate) fn spawn(
    pool: PgPool,
    config: SweepConfig,
    metrics: Arc<ProjectionMetrics>,
    shutdown: CancellationToken,
) -> Option<JoinHandle<()>> {
    if config.interval.is_zero() {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut kinds = AggregateKind::ALL.into_iter().cycle();
        let mut kind = AggregateKind::Ticket;
        let mut after = String::new();
        let mut yielding = Yielding::default();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(config.interval) => {}
            }
            if !yielding.may_sweep(metrics.total_lag(), &config, Instant::now()) {
                metrics.record_sweep_deferred();
                continue;
            }
            match sweep_range(&pool, kind, &after, config.batch).await {
                Ok(Some(range)) => {
                    metrics.record_swept(kind, &range.differences);
                    match range.next_after {
                        Some(next) => after = next,
                        None => {
                            after.clear();
                            kind = kinds.next().unwrap_or(AggregateKind::Ticket);
                        }
                    }
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(
                    error.cause_chain = %error_chain(&error),
                    error.message = %error,
                    "anti-entropy sweep step failed"
                ),
            }
        }
    }))
}

/// One range swept and healed; `None` if another worker is sweeping or the
/// read side has no position yet.
async fn sweep_range(
    pool: &PgPool,
    kind: AggregateKind,
    after: &str,
    batch: i64,
) -> Result<Option<RangeReport>, ProjectionError> {
    let mut tx = pool.begin().await?;
    if !try_claim(&mut tx, SWEEP_LOCK).await? {
        return Ok(None);
    }
    let Some(bound) = read_side_cursor(&mut tx).await? else {
        // Ended now: the lock would be held until the dropped transaction's
        // rollback reaches the server.
        tx.rollback().await?;
        return Ok(None);
    };
    let range = compare_range(&mut tx, kind, after, batch, bound).await?;
    if !range.differences.is_empty() {
        tracing::warn!(
            view = kind.view(),
            differences = range.differences.len(),
            first = ?range.differences.first(),
            "anti-entropy sweep found view rows that differ from the event store; healing them"
        );
        let _ = repair(&mut tx, &range.differences).await?;
    }
    tx.commit().await?;
    Ok(Some(range))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_runs_at_once_while_the_worker_keeps_up() {
        let config = SweepConfig::default();
        let mut yielding = Yielding::default();
        let now = Instant::now();
        assert!(yielding.may_sweep(0, &config, now));
        assert!(yielding.may_sweep(config.yield_lag, &config, now));
    }

    #[test]
    fn a_range_waits_while_the_worker_lags_but_never_longer_than_max_defer() {
        let config = SweepConfig::default();
        let mut yielding = Yielding::default();
        let start = Instant::now();
        let lagging = config.yield_lag + 1;
        assert!(!yielding.may_sweep(lagging, &config, start));
        assert!(!yielding.may_sweep(lagging, &config, start + config.max_defer / 2));
        assert!(yielding.may_sweep(lagging, &config, start + config.max_defer));
        // The wait starts again after the range it let through.
        let later = start + config.max_defer + config.interval;
        assert!(!yielding.may_sweep(lagging, &config, later));
        // Caught up: the next range runs, and a later lag waits afresh.
        assert!(yielding.may_sweep(0, &config, later + config.interval));
        let again = later + config.max_defer;
        assert!(!yielding.may_sweep(lagging, &config, again));
        assert!(yielding.may_sweep(lagging, &config, again + config.max_defer));
    }
}
