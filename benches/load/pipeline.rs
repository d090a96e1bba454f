//! The pipeline scenario: the create-ticket load, with the read side
//! watched. The write path's throughput alone says nothing of the events'
//! way to the read models (outbox relay, broker, projections); a server
//! whose read side falls behind shows it here, as backlog, stale reads,
//! 503s on reads that wait for the client's own write, and a long drain.
//!
//! 1. Settle: wait (bounded) until no event is waiting for a read model,
//!    so an earlier scenario's backlog is not counted as this one's.
//! 2. Load: create-ticket (goose, the create-ticket scenario's users) for
//!    `LOAD_PIPELINE_SECONDS`, with the read-your-writes prober beside it.
//! 3. Drain: from the end of the load until nothing is behind, bounded.
//! 4. Idle: paced creations (open loop) with the prober beside them, then
//!    a bounded wait until they are all projected.
//!
//! All along, once a second, the backlog is sampled from `/metrics` and
//! from the database (`sampler`); freshness comes after the run from the
//! database (`freshness`).

mod freshness;
mod idle;
mod prober;
mod sampler;
mod table;

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::{Connection, PgConnection};

use self::freshness::{Creation, Freshness};
use self::prober::{Prober, Probes};
use self::sampler::{Behind, Phase, Sample, Sampler};
use crate::fixtures::Account;
use crate::measurement::Measurement;
use crate::profile::{Profile, Scenario};

/// How often the drain waits look at the database: finer than the
/// once-a-second series, so a drain time is not rounded up to a second.
const DRAIN_POLL: Duration = Duration::from_millis(250);

/// The scenario's durations and rates (environment, see `main.rs`).
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) load: Duration,
    pub(crate) idle: Duration,
    pub(crate) idle_rate: u32,
    pub(crate) drain_timeout: Duration,
}

impl Settings {
    pub(crate) fn from_env(profile: Profile) -> anyhow::Result<Self> {
        let number = |name: &str, default: u64| -> anyhow::Result<u64> {
            std::env::var(name)
                .ok()
                .filter(|value| !value.is_empty())
                .map_or(Ok(default), |value| value.parse())
                .with_context(|| format!("{name} must be a whole number"))
        };
        let idle_default = match profile {
            Profile::Full => 30,
            Profile::Short => 20,
        };
        let settings = Self {
            load: Duration::from_secs(number(
                "LOAD_PIPELINE_SECONDS",
                Scenario::Pipeline.duration(profile).as_secs(),
            )?),
            idle: Duration::from_secs(number("LOAD_PIPELINE_IDLE_SECONDS", idle_default)?),
            idle_rate: u32::try_from(number("LOAD_PIPELINE_IDLE_RATE", 100)?)
                .context("LOAD_PIPELINE_IDLE_RATE is too large")?,
            drain_timeout: Duration::from_secs(number("LOAD_PIPELINE_DRAIN_TIMEOUT", 180)?),
        };
        anyhow::ensure!(
            settings.load.as_secs() > 0 && settings.idle_rate > 0,
            "LOAD_PIPELINE_SECONDS and LOAD_PIPELINE_IDLE_RATE must be at least 1"
        );
        Ok(settings)
    }
}

/// How a wait for the read side to catch up ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Drain {
    /// Nothing was behind after this long.
    Drained(Duration),
    /// Still `behind` events when the wait gave up.
    TimedOut { waited: Duration, behind: i64 },
}

/// Everything the scenario measured.
pub(crate) struct Outcome {
    pub(crate) settings: Settings,
    /// The wait before the load for an earlier backlog.
    pub(crate) settle: Drain,
    pub(crate) load: Measurement,
    /// The machine's CPU during the load (`None` without `/proc`).
    pub(crate) load_cpu: Option<crate::cpu::Usage>,
    pub(crate) load_probes: Probes,
    pub(crate) drain: Drain,
    /// The largest backlog+lag by the database during the load and the
    /// drain (the samples and the drain's own polls).
    pub(crate) max_behind: Option<i64>,
    pub(crate) idle: Measurement,
    pub(crate) idle_probes: Probes,
    pub(crate) after_idle: Drain,
    pub(crate) load_freshness: Freshness,
    pub(crate) idle_freshness: Freshness,
    /// The series' second 0: the load's start, by the database's clock.
    pub(crate) origin: DateTime<Utc>,
    pub(crate) samples: Vec<Sample>,
    pub(crate) creations: Vec<Creation>,
}

/// Runs the scenario against the system at `base_url` whose database is
/// `database_url`, loading as `buyer` (the load user of every scenario).
pub(crate) async fn run(
    settings: &Settings,
    base_url: &str,
    server_pid: Option<u32>,
    database_url: &str,
    buyer: &Account,
    run_id: &str,
) -> anyhow::Result<Outcome> {
    let mut connection = PgConnection::connect(database_url)
        .await
        .context("connecting to the system's database")?;
    let prober_account =
        crate::fixtures::sign_up(base_url, &format!("probe-{run_id}@loadtest.example")).await?;
    let client = reqwest::Client::builder()
        .timeout(prober::TIMEOUT)
        .build()
        .context("building the prober's client")?;
    let sampler = Sampler::start(base_url, database_url, Phase::Settle).await?;
    let mut counter = Behind::default();
    let (settle, _) = wait_drained(
        &mut connection,
        &mut counter,
        Instant::now(),
        settings.drain_timeout,
    )
    .await?;

    sampler.set_phase(Phase::Load);
    let origin = sampler::database_now(&mut connection).await?;
    let prober = Prober::start(client.clone(), base_url, &prober_account, "pipeline-probe");
    let cpu = crate::cpu::Window::start();
    let load = crate::attack::run(Scenario::Pipeline, settings.load, base_url, buyer, run_id)
        .await?
        .total;
    let load_cpu = cpu.end(server_pid);
    let load_ended = Instant::now();
    sampler.set_phase(Phase::Drain);
    let load_end = sampler::database_now(&mut connection).await?;
    eprintln!(
        "loadtest: pipeline: load done ({:.1} req/s); waiting up to {} s for the read side ...",
        load.requests_per_second(),
        settings.drain_timeout.as_secs()
    );
    // The prober's last reads end while the drain is timed.
    let (drain, load_probes) = tokio::join!(
        wait_drained(
            &mut connection,
            &mut counter,
            load_ended,
            settings.drain_timeout
        ),
        prober.stop()
    );
    let ((drain, drain_peak), load_probes) = (drain?, load_probes?);

    sampler.set_phase(Phase::Idle);
    eprintln!(
        "loadtest: pipeline: idle run ({}/s, {} s) ...",
        settings.idle_rate,
        settings.idle.as_secs()
    );
    let idle_start = sampler::database_now(&mut connection).await?;
    let prober = Prober::start(client.clone(), base_url, &prober_account, "pipeline-probe");
    let idle = idle::paced_creations(
        &client,
        base_url,
        buyer,
        settings.idle_rate,
        settings.idle,
        "pipeline-idle",
    )
    .await;
    let idle_end = sampler::database_now(&mut connection).await?;
    let idle_probes = prober.stop().await?;
    let idle = idle?;
    sampler.set_phase(Phase::Settled);
    let (after_idle, _) = wait_drained(
        &mut connection,
        &mut counter,
        Instant::now(),
        settings.drain_timeout,
    )
    .await?;
    let samples = sampler.stop().await?;

    let creations = freshness::creations(&mut connection, origin, idle_end).await?;
    let within = |from: DateTime<Utc>, to: DateTime<Utc>| {
        creations
            .iter()
            .filter(move |c| c.recorded_at >= from && c.recorded_at < to)
    };
    let load_freshness = Freshness::of(within(origin, load_end))?;
    let idle_freshness = Freshness::of(within(idle_start, idle_end))?;
    let max_behind = samples
        .iter()
        .filter(|s| matches!(s.phase, Phase::Load | Phase::Drain))
        .filter_map(|s| s.behind)
        .chain([drain_peak])
        .max();
    Ok(Outcome {
        settings: settings.clone(),
        settle,
        load,
        load_cpu,
        load_probes,
        drain,
        max_behind,
        idle,
        idle_probes,
        after_idle,
        load_freshness,
        idle_freshness,
        origin,
        samples,
        creations,
    })
}

/// Polls the database until no event is waiting for a read model, or
/// `timeout` after `since`; also returns the most it saw behind.
async fn wait_drained(
    connection: &mut PgConnection,
    counter: &mut Behind,
    since: Instant,
    timeout: Duration,
) -> anyhow::Result<(Drain, i64)> {
    let mut peak = 0;
    loop {
        let (_, behind) = counter.count(connection).await?;
        peak = peak.max(behind);
        let waited = since.elapsed();
        if behind <= 0 {
            return Ok((Drain::Drained(waited), peak));
        }
        if waited >= timeout {
            return Ok((Drain::TimedOut { waited, behind }, peak));
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
}

pub(crate) use self::sampler::metric_sum_where;
pub(crate) use self::table::render;
