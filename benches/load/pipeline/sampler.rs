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

/// Events committed minus events applied, and the database's clock, in
/// one statement (so one snapshot: a view can never be counted ahead of
/// the events it applied). Each view row's `last_sequence` is how many of
/// its aggregate's events it has applied.
const BEHIND: &str = "SELECT clock_timestamp(), \
     ((SELECT count(*) FROM events) \
      - (SELECT coalesce(sum(last_sequence), 0) FROM ticket_views) \
      - (SELECT coalesce(sum(last_sequence), 0) FROM order_views) \
      - (SELECT coalesce(sum(last_sequence), 0) FROM payment_views))::bigint";

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

/// The database's clock and how many events are not in a read model yet.
pub(crate) async fn behind(connection: &mut PgConnection) -> anyhow::Result<(DateTime<Utc>, i64)> {
    sqlx::query_as(BEHIND)
        .fetch_one(connection)
        .await
        .context("counting the events not yet in a read model")
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
        // Not counted during the idle run: the count reads every event and
        // view row (about 100 ms of a core a second after the load), which
        // would weigh on the idle freshness it runs beside.
        let count = current != Phase::Idle;
        let (exposition, database) = tokio::join!(
            scrape(&target),
            database_sample(&target, &mut connection, count)
        );
        let (at, behind) = match database {
            Ok(sampled) => sampled,
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

/// [`behind`], reconnecting first if the last attempt lost the connection.
/// The database's clock and, if `count`, how many events are not in a read
/// model yet; on the sampler's connection, reopened after a failure.
async fn database_sample(
    target: &Target,
    connection: &mut Option<PgConnection>,
    count: bool,
) -> anyhow::Result<(DateTime<Utc>, Option<i64>)> {
    let mut open = match connection.take() {
        Some(open) => open,
        None => PgConnection::connect(&target.database_url)
            .await
            .context("reconnecting the sampler")?,
    };
    let measured = if count {
        behind(&mut open)
            .await
            .map(|(at, behind)| (at, Some(behind)))
    } else {
        database_now(&mut open).await.map(|at| (at, None))
    };
    if measured.is_ok() {
        *connection = Some(open);
    }
    measured
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
}
