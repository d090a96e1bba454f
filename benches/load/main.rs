//! `loadtest`: the original platform's published load scenarios, run with
//! goose against this backend, beside a pgbench insert-only reference, and
//! printed as one table (also written to `LOAD_REPORT_DIR`).
//!
//! `make bench` runs the short profile, `make bench-full` the original
//! durations. Settings (environment):
//!
//! - `LOAD_PROFILE`: `short` (default) or `full`;
//! - `LOAD_TARGET_URL`: a running system to load; unset, the harness starts
//!   `ticketing serve` (`LOAD_SERVER_BIN`, default
//!   `$CARGO_TARGET_DIR/release/ticketing`) over a fresh database;
//! - `LOAD_SCENARIOS`: a comma-separated subset (default: all, in order);
//! - `LOAD_ADMIN_DATABASE_URL`: server for the fresh databases (default
//!   `postgres://postgres@127.0.0.1:5432/postgres`);
//! - `LOAD_PGBENCH_SECONDS` (default 10; 0 skips), `PGBENCH` (binary path);
//! - `DATABASE_MAX_CONNECTIONS`: passed to the server, and pgbench's client
//!   count (default 32, the server's default pool).
//!
//! The `pipeline` scenario (last in the default list; alone with `make
//! bench-pipeline`) watches the read side under the create-ticket load:
//! 700 users create tickets for `LOAD_PIPELINE_SECONDS` (default 20 s short,
//! 60 s full) while the outbox backlog and consumer lag are sampled every
//! second, from the server's `/metrics` and from the database (events not
//! yet in a read model, the figure reported), and a prober creates a ticket
//! every 200 ms and reads it back with its `X-Consistency-Token`. Then it
//! times the drain (bounded by `LOAD_PIPELINE_DRAIN_TIMEOUT`, default
//! 180 s), and runs `LOAD_PIPELINE_IDLE_RATE` (default 100) creations a
//! second for `LOAD_PIPELINE_IDLE_SECONDS` (default 20 s short, 30 s full)
//! with the prober again. Freshness (event commit to read model row) comes
//! from the database after the run. Its table sets the load against the
//! pgbench reference of the same run; the written report adds the
//! per-second series. It reads the system's database: against
//! `LOAD_TARGET_URL`, give it as `LOAD_DATABASE_URL`.

mod attack;
mod cpu;
mod fixtures;
mod measurement;
mod pgbench;
mod pipeline;
mod profile;
mod report;
mod system;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;

use crate::profile::{Profile, Scenario};
use crate::report::{Context, Report};
use crate::system::{Launch, System};

/// The server's default pool size (`DATABASE_MAX_CONNECTIONS`).
const DEFAULT_POOL: u32 = 32;

/// Orders the load user holds while list-orders and the soak run.
const SEEDED_ORDERS: usize = 20;

struct Settings {
    profile: Profile,
    target_url: Option<String>,
    /// The database of the system at `target_url` (the pipeline reads it).
    database_url: Option<String>,
    scenarios: Vec<Scenario>,
    admin_url: String,
    server_bin: PathBuf,
    pgbench_seconds: u64,
    pool_size: Option<u32>,
    report_dir: PathBuf,
    pipeline: pipeline::Settings,
}

impl Settings {
    fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let scenarios = match var("LOAD_SCENARIOS") {
            Some(list) => list
                .split(',')
                .map(|name| Scenario::from_name(name.trim()))
                .collect::<anyhow::Result<_>>()?,
            None => Scenario::ALL.to_vec(),
        };
        let target_dir = var("CARGO_TARGET_DIR").unwrap_or_else(|| "target".to_owned());
        let profile = var("LOAD_PROFILE").as_deref().unwrap_or("short").parse()?;
        let target_url = var("LOAD_TARGET_URL");
        let database_url = var("LOAD_DATABASE_URL");
        anyhow::ensure!(
            target_url.is_none() || database_url.is_some() || !scenarios.contains(&Scenario::Pipeline),
            "the pipeline scenario reads the system's database: with LOAD_TARGET_URL, set LOAD_DATABASE_URL"
        );
        Ok(Self {
            profile,
            target_url,
            database_url,
            scenarios,
            admin_url: var("LOAD_ADMIN_DATABASE_URL")
                .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned()),
            server_bin: var("LOAD_SERVER_BIN").map_or_else(
                || PathBuf::from(target_dir).join("release/ticketing"),
                PathBuf::from,
            ),
            pgbench_seconds: var("LOAD_PGBENCH_SECONDS")
                .map(|s| s.parse())
                .transpose()
                .context("LOAD_PGBENCH_SECONDS")?
                .unwrap_or(10),
            pool_size: var("DATABASE_MAX_CONNECTIONS")
                .map(|s| s.parse())
                .transpose()
                .context("DATABASE_MAX_CONNECTIONS")?,
            report_dir: PathBuf::from(
                var("LOAD_REPORT_DIR").unwrap_or_else(|| ".run/loadtest".to_owned()),
            ),
            pipeline: pipeline::Settings::from_env(profile)?,
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    std::fs::create_dir_all(&settings.report_dir)
        .with_context(|| format!("creating {}", settings.report_dir.display()))?;
    let run_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)?
        .as_secs()
        .to_string();
    let system = match &settings.target_url {
        Some(url) => System::attach(url, settings.database_url.clone()),
        None => {
            eprintln!("loadtest: starting {} serve", settings.server_bin.display());
            System::start(&Launch {
                binary: &settings.server_bin,
                admin_url: &settings.admin_url,
                run_id: &run_id,
                work_dir: &settings.report_dir,
            })
            .await?
        }
    };
    let measured = run(&settings, &system, &run_id).await;
    let stopped = system.stop().await;
    let rendered = measured?;
    stopped.context("stopping the server")?;
    println!("{}", rendered.printed);
    let file = settings
        .report_dir
        .join(format!("report-{}-{run_id}.md", settings.profile));
    std::fs::write(&file, &rendered.written)
        .with_context(|| format!("writing {}", file.display()))?;
    eprintln!("loadtest: report written to {}", file.display());
    Ok(())
}

/// The report: as printed, and as written (with the long per-second series).
struct Rendered {
    printed: String,
    written: String,
}

async fn run(settings: &Settings, system: &System, run_id: &str) -> anyhow::Result<Rendered> {
    let base_url = &system.base_url;
    let buyer = fixtures::sign_up(base_url, &format!("load-{run_id}@loadtest.example")).await?;
    let seller = fixtures::sign_up(base_url, &format!("seller-{run_id}@loadtest.example")).await?;
    fixtures::seed_orders(base_url, &seller, &buyer, SEEDED_ORDERS).await?;

    // Measured once, before the first scenario that is set against it.
    let mut reference = None;
    let mut results = Vec::new();
    let mut pipelines = Vec::new();
    for &scenario in &settings.scenarios {
        if matches!(scenario, Scenario::CreateTicket | Scenario::Pipeline) && reference.is_none() {
            reference = Some(physical_limit(settings, run_id).await);
        }
        if scenario == Scenario::Pipeline {
            pipelines.push(run_pipeline(settings, system, &buyer, run_id).await?);
            continue;
        }
        eprintln!(
            "loadtest: {} ({} users, {} s) ...",
            scenario.name(),
            scenario.users(),
            scenario.duration(settings.profile).as_secs()
        );
        let run_time = scenario.duration(settings.profile);
        let cache_before = page_cache_counts(base_url).await;
        let outcome = attack::run(scenario, run_time, base_url, &buyer, run_id).await?;
        let cache = match (cache_before, page_cache_counts(base_url).await) {
            (Some((hits, misses)), Some((hits_after, misses_after))) => {
                let (hits, misses) = (hits_after - hits, misses_after - misses);
                if hits + misses > 0.0 {
                    format!(
                        ", page cache {:.1}% hits ({hits:.0} of {:.0})",
                        100.0 * hits / (hits + misses),
                        hits + misses
                    )
                } else {
                    String::new()
                }
            }
            _ => String::new(),
        };
        eprintln!(
            "loadtest: {}: {:.1} req/s, p99 {}, errors: {}{cache}",
            scenario.name(),
            outcome.total.requests_per_second(),
            measurement::format_latency(outcome.total.p99_us),
            outcome.total.errors_by_status()
        );
        results.push((scenario, outcome));
        // Let the server drain (connections closing, the relay and the
        // projections catching up) before the next scenario starts.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let context = Context {
        profile: settings.profile,
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        machine: machine(),
        target: settings.target_url.clone().unwrap_or_else(|| {
            format!("`ticketing serve` (release) at {base_url}, fresh database")
        }),
        pool_size: settings
            .pool_size
            .or(settings.target_url.is_none().then_some(DEFAULT_POOL)),
    };
    let reference =
        reference.unwrap_or_else(|| Err("neither create-ticket nor pipeline was run".to_owned()));
    let report = Report {
        context: &context,
        results: &results,
        reference: reference.as_ref().map_err(Clone::clone),
    }
    .render();
    let mut rendered = Rendered {
        printed: report.clone(),
        written: report,
    };
    for outcome in &pipelines {
        let pipeline = pipeline::render(outcome, reference.as_ref().map_err(String::as_str));
        rendered.printed.push_str(&pipeline.table);
        rendered.written.push_str(&pipeline.with_series);
    }
    Ok(rendered)
}

/// The pipeline scenario, on the system's own database.
async fn run_pipeline(
    settings: &Settings,
    system: &System,
    buyer: &fixtures::Account,
    run_id: &str,
) -> anyhow::Result<pipeline::Outcome> {
    let database_url = system
        .database_url
        .as_deref()
        .context("the pipeline scenario needs the system's database (LOAD_DATABASE_URL)")?;
    let s = &settings.pipeline;
    eprintln!(
        "loadtest: pipeline ({} users, {} s; then {}/s for {} s) ...",
        Scenario::Pipeline.users(),
        s.load.as_secs(),
        s.idle_rate,
        s.idle.as_secs()
    );
    let outcome = pipeline::run(
        s,
        &system.base_url,
        system.server_pid(),
        database_url,
        buyer,
        run_id,
    )
    .await?;
    eprintln!(
        "loadtest: pipeline: {:.1} req/s, errors: {}, max backlog+lag {}",
        outcome.load.requests_per_second(),
        outcome.load.errors_by_status(),
        outcome
            .max_behind
            .map_or_else(|| "-".to_owned(), |n| n.to_string())
    );
    Ok(outcome)
}

/// The pgbench reference at the create-ticket scenario's database
/// concurrency, or why it was not measured.
async fn physical_limit(settings: &Settings, run_id: &str) -> Result<pgbench::Reference, String> {
    if settings.pgbench_seconds == 0 {
        return Err("LOAD_PGBENCH_SECONDS=0".to_owned());
    }
    let Some(binary) = pgbench::find_binary() else {
        return Err("no pgbench found (set PGBENCH)".to_owned());
    };
    let clients = settings.pool_size.unwrap_or(DEFAULT_POOL);
    eprintln!(
        "loadtest: pgbench insert-only reference ({clients} clients, {} s) ...",
        settings.pgbench_seconds
    );
    pgbench::run(
        &binary,
        &settings.admin_url,
        clients,
        Duration::from_secs(settings.pgbench_seconds),
        &settings.report_dir,
        run_id,
    )
    .await
    .map_err(|e| format!("pgbench failed: {e:#}"))
}

/// The server's page cache (hits, misses) so far, from its `/metrics`;
/// `None` if it does not answer or has no page cache.
async fn page_cache_counts(base_url: &str) -> Option<(f64, f64)> {
    let exposition = reqwest::get(format!("{base_url}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let count = |result: &str| {
        pipeline::metric_sum_where(
            &exposition,
            "page_cache_requests_total",
            &format!("result=\"{result}\""),
        )
    };
    Some((count("hit")?, count("miss")?))
}

/// `N cores, M GiB` of this machine, from the OS.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or_else(
            || "? GiB".to_owned(),
            |kib| format!("{:.0} GiB", kib / 1_048_576.0),
        );
    format!("{cores} cores, {memory_gib} RAM")
}
