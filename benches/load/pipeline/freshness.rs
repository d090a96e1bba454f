//! Freshness, measured after the run from the database alone: for each
//! ticket created, the time from its `TicketCreated` event's commit
//! (`events.recorded_at` of sequence 1) to its read model row
//! (`ticket_views.updated_at`, set when the projector applied it). No
//! clock but the database's (and the projector's, on the same machine) is
//! involved, and every creation counts, not a sample.

use std::collections::BTreeMap;

use anyhow::Context;
use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use sqlx::PgConnection;

/// Every ticket whose creation was recorded in `[$1, $2)`, with its view
/// row's apply time and checkpoint (NULL: not projected).
const CREATED: &str = "SELECT e.recorded_at, t.updated_at, t.last_sequence \
     FROM events e LEFT JOIN ticket_views t ON t.id = e.aggregate_id \
     WHERE e.aggregate_type = 'Ticket' AND e.sequence = 1 \
       AND e.recorded_at >= $1 AND e.recorded_at < $2";

/// One created ticket.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Creation {
    pub(crate) recorded_at: DateTime<Utc>,
    /// When its view row was written; `None` if it has none yet.
    pub(crate) applied_at: Option<DateTime<Utc>>,
    /// Its row has applied later events too, so `updated_at` is theirs.
    pub(crate) updated_since: bool,
}

#[derive(sqlx::FromRow)]
struct Row {
    recorded_at: DateTime<Utc>,
    updated_at: Option<DateTime<Utc>>,
    last_sequence: Option<i64>,
}

pub(crate) async fn creations(
    connection: &mut PgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<Vec<Creation>> {
    let rows: Vec<Row> = sqlx::query_as(CREATED)
        .bind(from)
        .bind(to)
        .fetch_all(connection)
        .await
        .context("reading the tickets created and their views")?;
    Ok(rows
        .into_iter()
        .map(|row| Creation {
            recorded_at: row.recorded_at,
            applied_at: row.updated_at,
            updated_since: row.last_sequence.is_some_and(|sequence| sequence > 1),
        })
        .collect())
}

/// The freshness of a set of creations.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Freshness {
    /// Creations in the set.
    pub(crate) created: u64,
    /// Of those, not in a read model when measured.
    pub(crate) unprojected: u64,
    /// Of those, updated since (their freshness is not measurable).
    pub(crate) updated_since: u64,
    pub(crate) p50_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) max_us: u64,
}

impl Freshness {
    pub(crate) fn of<'a>(
        creations: impl IntoIterator<Item = &'a Creation>,
    ) -> anyhow::Result<Self> {
        // Bounded (1 µs to an hour): a saturating record clamps to the
        // bounds, where an auto-resizing histogram would clamp to its
        // initial (tiny) range.
        let mut histogram =
            Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).context("histogram bounds")?;
        let mut freshness = Self::default();
        for creation in creations {
            freshness.created += 1;
            if creation.updated_since {
                freshness.updated_since += 1;
                continue;
            }
            let Some(applied_at) = creation.applied_at else {
                freshness.unprojected += 1;
                continue;
            };
            // The projector's clock and the database's may differ by a
            // little; a view a hair "before" its event is fresh, not negative.
            let us = (applied_at - creation.recorded_at)
                .num_microseconds()
                .map_or(u64::MAX, |us| u64::try_from(us).unwrap_or(0))
                .max(1);
            histogram.saturating_record(us);
        }
        let percentile = |quantile: f64| histogram.value_at_quantile(quantile).min(histogram.max());
        freshness.p50_us = percentile(0.50);
        freshness.p99_us = percentile(0.99);
        freshness.max_us = histogram.max();
        Ok(freshness)
    }

    /// Creations whose freshness was measured.
    pub(crate) fn measured(&self) -> u64 {
        self.created - self.unprojected - self.updated_since
    }

    /// Each second since `origin` (by `recorded_at`) and the freshness of
    /// the creations recorded in it.
    pub(crate) fn per_second(
        creations: &[Creation],
        origin: DateTime<Utc>,
    ) -> anyhow::Result<BTreeMap<i64, Self>> {
        let mut seconds: BTreeMap<i64, Vec<&Creation>> = BTreeMap::new();
        for creation in creations {
            let second = (creation.recorded_at - origin)
                .num_milliseconds()
                .div_euclid(1_000);
            seconds.entry(second).or_default().push(creation);
        }
        seconds
            .into_iter()
            .map(|(second, in_it)| Ok((second, Self::of(in_it)?)))
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    fn creation(origin: DateTime<Utc>, at_ms: i64, fresh_ms: Option<i64>) -> Creation {
        let recorded_at = origin + TimeDelta::milliseconds(at_ms);
        Creation {
            recorded_at,
            applied_at: fresh_ms.map(|ms| recorded_at + TimeDelta::milliseconds(ms)),
            updated_since: false,
        }
    }

    #[test]
    fn freshness_counts_every_creation_and_skips_the_unprojected() {
        let origin = Utc::now();
        let mut all: Vec<Creation> = (0..99)
            .map(|n| creation(origin, n * 10, Some(20)))
            .collect();
        all.push(creation(origin, 5, Some(2_000)));
        all.push(creation(origin, 6, None));
        let freshness = Freshness::of(&all).unwrap();
        assert_eq!((freshness.created, freshness.unprojected), (101, 1));
        assert_eq!(freshness.measured(), 100);
        assert!(
            (19_980..=20_020).contains(&freshness.p50_us),
            "{freshness:?}"
        );
        assert!(freshness.p99_us >= 19_990, "{freshness:?}");
        assert!(
            (1_998_000..=2_002_000).contains(&freshness.max_us),
            "{freshness:?}"
        );
    }

    #[test]
    fn creations_are_bucketed_by_the_second_they_were_recorded() {
        let origin = Utc::now();
        let all = [
            creation(origin, -1, Some(1)),
            creation(origin, 0, Some(1)),
            creation(origin, 999, Some(1)),
            creation(origin, 1_000, Some(3_000)),
        ];
        let seconds = Freshness::per_second(&all, origin).unwrap();
        let counts: Vec<(i64, u64)> = seconds.iter().map(|(s, f)| (*s, f.created)).collect();
        assert_eq!(counts, [(-1, 1), (0, 2), (1, 1)]);
        assert!(seconds[&1].p50_us >= 2_990_000);
        assert_eq!(Freshness::of([]).unwrap().p99_us, 0);
    }
}
