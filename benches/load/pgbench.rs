//! The physical-limit reference: how many insert-only transactions
//! PostgreSQL alone commits per second on this machine, at the database
//! concurrency of the create-ticket scenario (the server's pool size), run
//! with the pgbench of Debian's PostgreSQL server package.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use sqlx::{Connection, Executor, PgConnection};

use ticketing_eventstore::with_database;

/// The insert-only script (one event-sized row per transaction).
const SCRIPT: &str = include_str!("pgbench_insert.sql");

const TABLE: &str = "CREATE TABLE pgbench_events (
    global_position bigserial PRIMARY KEY,
    aggregate_id uuid NOT NULL,
    sequence bigint NOT NULL,
    event_type text NOT NULL,
    payload jsonb NOT NULL,
    metadata jsonb NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (aggregate_id, sequence)
)";

#[derive(Clone, Debug)]
pub(crate) struct Reference {
    pub(crate) clients: u32,
    pub(crate) transactions_per_second: f64,
    pub(crate) transactions: u64,
    pub(crate) failed: u64,
    pub(crate) p50_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) max_us: u64,
    /// The machine's CPU while pgbench ran (`None` without `/proc`).
    pub(crate) cpu: Option<crate::cpu::Usage>,
}

/// `PGBENCH` when set, else the newest `/usr/lib/postgresql/*/bin/pgbench`,
/// else `pgbench` on the PATH.
pub(crate) fn find_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PGBENCH") {
        return Some(PathBuf::from(path));
    }
    let mut installed: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let binary = entry.path().join("bin/pgbench");
            binary.is_file().then_some((version, binary))
        })
        .collect();
    installed.sort();
    if let Some((_, binary)) = installed.pop() {
        return Some(binary);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("pgbench"))
            .find(|candidate| candidate.is_file())
    })
}

/// Runs the insert-only script for `duration` with `clients` connections in
/// a scratch database of the server behind `admin_url` (dropped after).
pub(crate) async fn run(
    binary: &Path,
    admin_url: &str,
    clients: u32,
    duration: Duration,
    work_dir: &Path,
    run_id: &str,
) -> anyhow::Result<Reference> {
    let database = format!("ticketing_pgbench_{run_id}");
    let mut admin = PgConnection::connect(admin_url)
        .await
        .context("connecting to the admin database for pgbench")?;
    let _ = admin
        .execute(format!("CREATE DATABASE {database}").as_str())
        .await
        .with_context(|| format!("creating {database}"))?;
    let url = with_database(admin_url, &database);
    let measured = measure(binary, &url, clients, duration, work_dir).await;
    let dropped = admin
        .execute(format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)").as_str())
        .await
        .with_context(|| format!("dropping {database}"));
    let reference = measured?;
    let _ = dropped?;
    Ok(reference)
}

async fn measure(
    binary: &Path,
    url: &str,
    clients: u32,
    duration: Duration,
    work_dir: &Path,
) -> anyhow::Result<Reference> {
    let mut connection = PgConnection::connect(url).await?;
    let _ = connection
        .execute(TABLE)
        .await
        .context("creating pgbench_events")?;
    connection.close().await?;

    let logs = work_dir.join("pgbench-logs");
    if logs.exists() {
        std::fs::remove_dir_all(&logs)?;
    }
    std::fs::create_dir_all(&logs)?;
    let script = work_dir.join("pgbench_insert.sql");
    std::fs::write(&script, SCRIPT)?;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
        .min(clients);
    let cpu = crate::cpu::Window::start();
    let output = tokio::process::Command::new(binary)
        .arg("--no-vacuum")
        .arg(format!("--client={clients}"))
        .arg(format!("--jobs={threads}"))
        .arg(format!("--time={}", duration.as_secs().max(1)))
        .arg("--protocol=prepared")
        .arg(format!("--file={}", script.display()))
        .arg("--log")
        .arg(format!("--log-prefix={}", logs.join("txn").display()))
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {}", binary.display()))?;
    let cpu = cpu.end(None);
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "pgbench failed ({}): {}{}",
        output.status,
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = Summary::parse(&stdout)?;
    let mut latencies = Histogram::<u64>::new(3)?;
    for entry in std::fs::read_dir(&logs)? {
        let text = std::fs::read_to_string(entry?.path())?;
        for us in text.lines().filter_map(log_latency_us) {
            latencies.record(us.max(1))?;
        }
    }
    Ok(Reference {
        clients,
        transactions_per_second: summary.transactions_per_second,
        transactions: summary.transactions,
        failed: summary.failed,
        p50_us: latencies.value_at_quantile(0.50),
        p99_us: latencies.value_at_quantile(0.99),
        max_us: latencies.max(),
        cpu,
    })
}

/// pgbench's closing figures.
#[derive(Debug, PartialEq)]
struct Summary {
    transactions_per_second: f64,
    transactions: u64,
    failed: u64,
}

impl Summary {
    fn parse(stdout: &str) -> anyhow::Result<Self> {
        let field = |prefix: &str| {
            stdout
                .lines()
                .find_map(|line| line.trim().strip_prefix(prefix))
                .and_then(|rest| rest.split_whitespace().next())
                .with_context(|| format!("pgbench printed no `{prefix}`: {stdout}"))
        };
        Ok(Self {
            transactions_per_second: field("tps = ")?.parse()?,
            transactions: field("number of transactions actually processed: ")?.parse()?,
            // Older pgbench (before 15) prints no failure count: it
            // aborts a client on an error instead.
            failed: field("number of failed transactions: ")
                .ok()
                .map(str::parse)
                .transpose()?
                .unwrap_or(0),
        })
    }
}

/// The latency of one line of pgbench's per-transaction log (`client_id
/// transaction_no time script_no time_epoch time_us ...`): `time` in
/// microseconds, or `failed`/`skipped` for a transaction that has none.
fn log_latency_us(line: &str) -> Option<u64> {
    line.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const OUTPUT: &str = "pgbench (15.20 (Debian 15.20-0+deb12u1))
transaction type: /tmp/s.sql
scaling factor: 1
query mode: prepared
number of clients: 32
number of threads: 2
maximum number of tries: 1
duration: 10 s
number of transactions actually processed: 51234
number of failed transactions: 0 (0.000%)
latency average = 6.245 ms
initial connection time = 45.440 ms
tps = 5123.400000 (without initial connection time)
";

    #[test]
    fn the_summary_is_read_from_pgbench_output() {
        assert_eq!(
            Summary::parse(OUTPUT).unwrap(),
            Summary {
                transactions_per_second: 5_123.4,
                transactions: 51_234,
                failed: 0,
            }
        );
        assert!(Summary::parse("garbage").is_err());
    }

    #[test]
    fn log_lines_give_the_latency_in_microseconds() {
        assert_eq!(log_latency_us("0 199 2241 0 1175850568 995598"), Some(2241));
        assert_eq!(log_latency_us("3 12 failed 0 1175850569 12"), None);
        assert_eq!(log_latency_us(""), None);
    }
}
