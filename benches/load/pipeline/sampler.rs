//! The read side watched once a second, two ways: what the server says of
//! itself on `/metrics` (the relay's `outbox_backlog_events` and the
//! projections' `consumer_lag_messages`, summed over topics and
//! partitions), and what the database says, which is the truth the
//! benchmark reports: events committed but not yet applied to a read model.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::{Connection, PgConnection};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

/// The events not yet in a read model after a watermark, and where the
/// watermark can move to, with the database's clock, in one statement (so
/// one snapshot). An event is in a read model when its aggregate's view row
/// has applied its sequence (`last_sequence` is the aggregate's last applied
/// event). Only the events after the watermark are read, each view row by
/// its key, so a sample costs what is behind plus a second of events,
/// however many the store holds (the count of every event and view row it
/// replaced took 97 ms a call by the end of a load, a fifth of PostgreSQL's
/// CPU per write). The watermark, in `(transaction_id, global_position)`
/// order like the relay's cursor, moves only over applied events whose
/// transaction is older than every one in flight: nothing can commit before
/// it later, and a view row never goes back.
const BEHIND: &str = "WITH horizon AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin), \
     recent AS MATERIALIZED ( \
         SELECT e.transaction_id, e.global_position, \
                coalesce(CASE e.aggregate_type \
                    WHEN 'Ticket' THEN (SELECT last_sequence FROM ticket_views WHERE id = e.aggregate_id) \
                    WHEN 'Order' THEN (SELECT last_sequence FROM order_views WHERE id = e.aggregate_id) \
                    WHEN 'Payment' THEN (SELECT last_sequence FROM payment_views WHERE id = e.aggregate_id) \
                END, 0) >= e.sequence AS applied \
         FROM events e \
         WHERE (e.transaction_id, e.global_position) > ($1::bigint::text::xid8, $2)), \
     pending AS (SELECT transaction_id, global_position FROM recent WHERE NOT applied \
                 ORDER BY transaction_id, global_position LIMIT 1), \
     settled AS (SELECT r.transaction_id, r.global_position FROM recent r, horizon h \
                 WHERE r.applied AND r.transaction_id < h.xmin \
                   AND (NOT EXISTS (SELECT 1 FROM pending) \
                        OR (r.transaction_id, r.global_position) \
                           < (SELECT p.transaction_id, p.global_position FROM pending p)) \
                 ORDER BY r.transaction_id DESC, r.global_position DESC LIMIT 1) \
     SELECT clock_timestamp(), \
            (SELECT count(*) FROM recent WHERE NOT applied), \
            (SELECT transaction_id::text::bigint FROM settled), \
            (SELECT global_position FROM settled)";

/// Counts the events committed but not yet in a read model (see [`BEHIND`]),
/// remembering how far every event is known to be applied.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Behind {
    /// `(transaction_id, global_position)`: every event at or before it is in
    /// a read model and no event can still commit before it.
    watermark: (i64, i64),
}

impl Behind {
    /// The database's clock and how many events are not in a read model yet.
    pub(crate) async fn count(
        &mut self,
        connection: &mut PgConnection,
    ) -> anyhow::Result<(DateTime<Utc>, i64)> {
        let mut transaction = connection
            .begin()
            .await
            .context("counting the events not yet in a read model")?;
        // The events after the watermark through their index, whatever the
        // planner believes of a table that grew since it was analysed; and
        // no JIT: the estimate for a range of unknown size passes
        // `jit_above_cost`, and compiling took 350 to 550 ms a call for a
        // statement that runs in one.
        sqlx::query(
            "SELECT set_config('enable_seqscan', 'off', true), set_config('jit', 'off', true)",
        )
        .execute(&mut *transaction)
        .await
        .context("counting the events not yet in a read model")?;
        let (at, behind, transaction_id, global_position): (
            DateTime<Utc>,
            i64,
            Option<i64>,
            Option<i64>,
        ) = sqlx::query_as(BEHIND)
            .persistent(false)
            .bind(self.watermark.0)
            .bind(self.watermark.1)
            .fetch_one(&mut *transaction)
            .await
            .context("counting the events not yet in a read model")?;
        transaction
            .commit()
            .await
            .context("counting the events not yet in a read model")?;
        if let (Some(transaction_id), Some(global_position)) = (transaction_id, global_position) {
            self.watermark = (transaction_id, global_position);
        }
        Ok((at, behind))
    }
}

/// The server's gauges, as `serve` renders them on its `/metrics`.
const OUTBOX_BACKLOG: &str = "outbox_backlog_events";
const CONSUMER_LAG: &str = "consumer_lag_messages";

/// How long one scrape of `/metrics` may take: a loaded gateway answers it
/// late, and a late answer is no longer the second it was asked for.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the harness was doing when a sample was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for an earlier backlog to drain before the load.
    Settle,
    Load,
    /// After the load, until the backlog drained or the wait timed out.
    Drain,
    Idle,
    /// After the idle run, until its creations are in the read models.
    Settled,
}

impl Phase {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Settle => "settle",
            Self::Load => "load",
            Self::Drain => "drain",
            Self::Idle => "idle",
            Self::Settled => "after idle",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Sample {
    /// The database's clock (the harness's when the database did not
    /// answer), so samples line up with the events' `recorded_at`.
    pub(crate) at: DateTime<Utc>,
    pub(crate) phase: Phase,
    /// `outbox_backlog_events`; `None` when `/metrics` did not answer in
    /// time or lacks it (an older build).
    pub(crate) outbox_backlog: Option<f64>,
    /// `consumer_lag_messages`, summed over all its series.
    pub(crate) consumer_lag: Option<f64>,
    /// Events committed but not in a read model (the database's truth).
    pub(crate) behind: Option<i64>,
}

/// The database's clock.
pub(crate) async fn database_now(connection: &mut PgConnection) -> anyhow::Result<DateTime<Utc>> {
    sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(connection)
        .await
        .context("reading the database's clock")
}

/// The sum of every series of the metric `name` in a Prometheus text
/// exposition; `None` when it has none.
pub(crate) fn metric_sum(exposition: &str, name: &str) -> Option<f64> {
    metric_sum_where(exposition, name, "")
}

/// The sum of the series of `name` whose labels contain `label` (e.g.
/// `result="hit"`; empty: every series); `None` when none matches.
pub(crate) fn metric_sum_where(exposition: &str, name: &str, label: &str) -> Option<f64> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            // `name{labels} value` or `name value`; not `name_suffix ...`.
            let value = match rest.strip_prefix('{') {
                Some(labelled) => {
                    let (labels, value) = labelled.split_once('}')?;
                    if !labels.contains(label) {
                        return None;
                    }
                    value
                }
                None if rest.starts_with(' ') && label.is_empty() => rest,
                None => return None,
            };
            value.split_whitespace().next()?.parse::<f64>().ok()
        })
        .fold(None, |sum, value| Some(sum.unwrap_or(0.0) + value))
}

/// A task sampling once a second until stopped.
pub(crate) struct Sampler {
    phase: watch::Sender<Phase>,
    stop: CancellationToken,
    task: JoinHandle<Vec<Sample>>,
    /// Stops the task if the run fails before `stop` is called.
    _guard: DropGuard,
}

impl Sampler {
    /// Connects (so that a wrong URL fails here, not silently in the task)
    /// and starts sampling in phase `phase`.
    pub(crate) async fn start(
        base_url: &str,
        database_url: &str,
        phase: Phase,
    ) -> anyhow::Result<Self> {
        let connection = PgConnection::connect(database_url)
            .await
            .context("connecting the sampler to the system's database")?;
        let client = reqwest::Client::builder()
            .timeout(SCRAPE_TIMEOUT)
            .build()
            .context("building the /metrics client")?;
        let (sender, receiver) = watch::channel(phase);
        let stop = CancellationToken::new();
        let task = tokio::spawn(sample(
            Target {
                client,
                metrics_url: format!("{base_url}/metrics"),
                database_url: database_url.to_owned(),
            },
            connection,
            receiver,
            stop.clone(),
        ));
        Ok(Self {
            phase: sender,
            _guard: stop.clone().drop_guard(),
            stop,
            task,
        })
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        self.phase.send_replace(phase);
    }

    /// Stops sampling and returns the samples, oldest first.
    pub(crate) async fn stop(self) -> anyhow::Result<Vec<Sample>> {
        self.stop.cancel();
        self.task.await.context("the sampler panicked")
    }
}

struct Target {
    client: reqwest::Client,
    metrics_url: String,
    database_url: String,
}

async fn sample(
    target: Target,
    connection: PgConnection,
    phase: watch::Receiver<Phase>,
    stop: CancellationToken,
) -> Vec<Sample> {
    let mut connection = Some(connection);
    let mut counter = Behind::default();
    let mut samples = Vec::new();
    let mut failures = 0_u64;
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    // A slow sample (a count under load) delays the next rather than
    // bunching the ones it missed.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let current = *phase.borrow();
        let (exposition, database) = tokio::join!(
            scrape(&target),
            database_sample(&target, &mut connection, &mut counter)
        );
        let (at, behind) = match database {
            Ok((at, behind)) => (at, Some(behind)),
            Err(error) => {
                failures += 1;
                // One line, not one a second, if the database is gone.
                if failures == 1 {
                    eprintln!("loadtest: pipeline: a sample failed: {error:#}");
                }
                (Utc::now(), None)
            }
        };
        let gauge = |name| {
            exposition
                .as_deref()
                .and_then(|text| metric_sum(text, name))
        };
        samples.push(Sample {
            at,
            phase: current,
            outbox_backlog: gauge(OUTBOX_BACKLOG),
            consumer_lag: gauge(CONSUMER_LAG),
            behind,
        });
    }
    if failures > 0 {
        eprintln!("loadtest: pipeline: {failures} database samples failed in all");
    }
    samples
}

/// `/metrics`, or `None` if it did not answer 200 in time.
async fn scrape(target: &Target) -> Option<String> {
    let response = target.client.get(&target.metrics_url).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.text().await.ok()
}

/// The database's clock and how many events are not in a read model yet,
/// on the sampler's connection, reopened after a failure.
async fn database_sample(
    target: &Target,
    connection: &mut Option<PgConnection>,
    counter: &mut Behind,
) -> anyhow::Result<(DateTime<Utc>, i64)> {
    let mut open = match connection.take() {
        Some(open) => open,
        None => PgConnection::connect(&target.database_url)
            .await
            .context("reconnecting the sampler")?,
    };
    let counted = counter.count(&mut open).await?;
    *connection = Some(open);
    Ok(counted)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPOSITION: &str = "\
# HELP outbox_backlog_events Committed events not yet published
# TYPE outbox_backlog_events gauge
outbox_backlog_events 42
outbox_backlog_events_other 7
# TYPE consumer_lag_messages gauge
consumer_lag_messages{topic=\"t.tickets.v1\",partition=\"0\"} 10
consumer_lag_messages{topic=\"t.tickets.v1\",partition=\"1\"} 5.5
consumer_lag_messages{topic=\"t.orders.v1\",partition=\"0\"} 0
";

    #[test]
    fn gauges_are_summed_over_their_series() {
        assert_eq!(metric_sum(EXPOSITION, OUTBOX_BACKLOG), Some(42.0));
        assert_eq!(metric_sum(EXPOSITION, CONSUMER_LAG), Some(15.5));
        assert_eq!(metric_sum(EXPOSITION, "relay_leader"), None);
        assert_eq!(metric_sum("", CONSUMER_LAG), None);
    }

    #[test]
    fn a_labelled_sum_counts_only_the_series_with_that_label() {
        assert_eq!(
            metric_sum_where(EXPOSITION, CONSUMER_LAG, "topic=\"t.tickets.v1\""),
            Some(15.5)
        );
        assert_eq!(
            metric_sum_where(EXPOSITION, CONSUMER_LAG, "partition=\"0\""),
            Some(10.0)
        );
        assert_eq!(
            metric_sum_where(EXPOSITION, OUTBOX_BACKLOG, "x=\"y\""),
            None
        );
    }

    async fn create_ticket(connection: &mut PgConnection, id: &str) -> anyhow::Result<()> {
        let _ = sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
             event_version, payload, metadata) \
             VALUES ('Ticket', $1, 1, 'TicketCreated', '1.0', '{}', '{}')",
        )
        .bind(id)
        .execute(connection)
        .await?;
        Ok(())
    }

    async fn project(connection: &mut PgConnection, ids: &[&str]) -> anyhow::Result<()> {
        let _ = sqlx::query(
            "INSERT INTO ticket_views (id, title, price_cents, user_id, version, last_sequence) \
             SELECT id, 'Seat', 100, 'u', 0, 1 FROM unnest($1::text[]) AS id",
        )
        .bind(ids)
        .execute(connection)
        .await?;
        Ok(())
    }

    /// The count from its watermark equals the full count at every step,
    /// and an event whose transaction was in flight when the watermark
    /// moved past later events is still counted once it commits.
    #[tokio::test]
    async fn the_count_from_the_watermark_is_the_count_of_the_whole_store() -> anyhow::Result<()> {
        let scratch = ticketing_eventstore::ScratchDatabase::create("behind", 4).await?;
        let result = async {
            let mut writer = PgConnection::connect(scratch.url()).await?;
            let mut sampler = PgConnection::connect(scratch.url()).await?;
            let mut counter = Behind::default();

            for id in ["a", "b", "c"] {
                create_ticket(&mut writer, id).await?;
            }
            assert_eq!(counter.count(&mut sampler).await?.1, 3);
            project(&mut writer, &["a", "b"]).await?;
            assert_eq!(counter.count(&mut sampler).await?.1, 1);

            // Inserted now, committed after later events have been applied
            // and the watermark has moved on.
            let mut in_flight = PgConnection::connect(scratch.url()).await?;
            let mut late = in_flight.begin().await?;
            create_ticket(&mut late, "late").await?;
            for id in ["d", "e"] {
                create_ticket(&mut writer, id).await?;
            }
            project(&mut writer, &["c", "d", "e"]).await?;
            assert_eq!(counter.count(&mut sampler).await?.1, 0);
            late.commit().await?;
            assert_eq!(counter.count(&mut sampler).await?.1, 1);
            project(&mut writer, &["late"]).await?;
            assert_eq!(counter.count(&mut sampler).await?.1, 0);
            // A fresh counter, from the start of the store, agrees.
            create_ticket(&mut writer, "f").await?;
            assert_eq!(Behind::default().count(&mut sampler).await?.1, 1);
            assert_eq!(counter.count(&mut sampler).await?.1, 1);
            anyhow::Ok(counter.watermark)
        }
        .await;
        scratch.remove().await?;
        let watermark = result?;
        assert!(watermark.1 > 0, "the watermark never moved: {watermark:?}");
        Ok(())
    }
}
