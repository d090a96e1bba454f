//! The pipeline scenario as Markdown: one table (printed and written),
//! and the per-second series (written only: it is long).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::freshness::Freshness;
use super::prober::Probes;
use super::sampler::{Phase, Sample};
use super::{Drain, Outcome};
use crate::measurement::{format_latency, Measurement};
use crate::pgbench::Reference;
use crate::profile::Scenario;

/// The table, and the table followed by the per-second series.
pub(crate) struct Rendered {
    pub(crate) table: String,
    pub(crate) with_series: String,
}

pub(crate) fn render(outcome: &Outcome, reference: Result<&Reference, &str>) -> Rendered {
    let table = table(outcome, reference);
    let with_series = format!("{table}{}", series(outcome));
    Rendered { table, with_series }
}

fn table(o: &Outcome, reference: Result<&Reference, &str>) -> String {
    let s = &o.settings;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n## Pipeline: create-ticket at {} users for {} s, drain, then {} creations/s for {} s\n",
        Scenario::Pipeline.users(),
        s.load.as_secs(),
        s.idle_rate,
        s.idle.as_secs()
    );
    out.push_str("| | load | idle |\n|---|---:|---:|\n");
    let mut row = |label: &str, load: String, idle: String| {
        let _ = writeln!(out, "| {label} | {load} | {idle} |");
    };
    row(
        "write req/s (POST /api/tickets)",
        format!("{:.1}", o.load.requests_per_second()),
        format!("{:.1}", o.idle.requests_per_second()),
    );
    let (versus_label, versus) = match reference {
        Ok(r) => (
            format!(
                "x pgbench insert-only ({:.1} commits/s, {} clients, same run)",
                r.transactions_per_second, r.clients
            ),
            format!(
                "{:.2} x",
                o.load.requests_per_second() / r.transactions_per_second
            ),
        ),
        Err(why) => (
            "x pgbench insert-only".to_owned(),
            format!("not measured ({why})"),
        ),
    };
    row(&versus_label, versus, "-".to_owned());
    // A saturated machine's write rate is its CPU over the CPU a write
    // costs: where that goes explains the ratio above.
    let unmeasured = || "- (no /proc)".to_owned();
    row(
        "CPU per write, by process",
        o.load_cpu
            .as_ref()
            .map_or_else(unmeasured, |cpu| cpu.per_operation(o.load.requests)),
        "-".to_owned(),
    );
    if let Ok(r) = reference {
        row(
            "CPU per pgbench commit, by process",
            r.cpu
                .as_ref()
                .map_or_else(unmeasured, |cpu| cpu.per_operation(r.transactions)),
            "-".to_owned(),
        );
    }
    row(
        "write p50 / p99",
        latencies(&o.load, false),
        latencies(&o.idle, false),
    );
    row("write errors", errors(&o.load), errors(&o.idle));
    row(
        "max backlog+lag (database: events not in a read model)",
        o.max_behind
            .map_or_else(|| "-".to_owned(), |n| n.to_string()),
        max_of(&o.samples, &[Phase::Idle], |s| s.behind.map(|n| n as f64)),
    );
    row(
        "max backlog+lag (/metrics: outbox_backlog_events + consumer_lag_messages)",
        max_of(&o.samples, &[Phase::Load, Phase::Drain], reported),
        max_of(&o.samples, &[Phase::Idle], reported),
    );
    row(
        "freshness p50 / p99 (commit to read model)",
        freshness(&o.load_freshness),
        freshness(&o.idle_freshness),
    );
    row(
        "prober read p50 / p99 / max (GET with X-Consistency-Token)",
        format!(
            "{} ({} reads)",
            latencies(&o.load_probes.reads, true),
            o.load_probes.reads.requests
        ),
        format!(
            "{} ({} reads)",
            latencies(&o.idle_probes.reads, true),
            o.idle_probes.reads.requests
        ),
    );
    row(
        "prober 503s / other failures",
        probe_failures(&o.load_probes),
        probe_failures(&o.idle_probes),
    );
    row(
        "drain time (end of load to backlog+lag = 0)",
        drain(o.drain),
        format!("{} (after the idle run)", drain(o.after_idle)),
    );
    out.push('\n');
    for note in notes(o) {
        let _ = writeln!(out, "- {note}");
    }
    out
}

fn notes(o: &Outcome) -> Vec<String> {
    let mut notes = vec![
        "backlog+lag (database) = events committed whose aggregate's view row has not applied \
         them (`last_sequence` below their sequence), counted once a second and every 250 ms \
         while draining, from a watermark below which every event is applied (so a sample reads \
         only the events since, not the whole store); /metrics figures are the server's own \
         gauges, for comparison."
            .to_owned(),
        "freshness: `ticket_views.updated_at - events.recorded_at` of each ticket's first event, \
         every ticket created in the window (the prober's included), bucketed by the second it \
         was recorded; the load window starts as goose starts its users."
            .to_owned(),
    ];
    if let Drain::TimedOut { waited, behind } = o.settle {
        notes.push(format!(
            "the read side was still {behind} events behind when the load began (after \
             waiting {} for the earlier scenarios' backlog): the load started on a backlog.",
            seconds(waited)
        ));
    }
    if matches!(o.drain, Drain::TimedOut { .. }) {
        notes.push(
            "the backlog had not drained when the idle run began: its figures include the \
             load's leftovers."
                .to_owned(),
        );
    }
    for (phase, f) in [("load", &o.load_freshness), ("idle", &o.idle_freshness)] {
        if f.unprojected > 0 || f.updated_since > 0 {
            notes.push(format!(
                "{phase}: of {} tickets created, {} were not in ticket_views when measured and \
                 {} had been updated since; freshness is of the other {}.",
                f.created,
                f.unprojected,
                f.updated_since,
                f.measured()
            ));
        }
    }
    let without_token = o.load_probes.without_token + o.idle_probes.without_token;
    if without_token > 0 {
        notes.push(format!(
            "{without_token} creations answered without X-Consistency-Token (an older build?): \
             their reads did not wait for the write."
        ));
    }
    notes
}

/// p50 / p99, and max if asked; `-` for no requests.
fn latencies(m: &Measurement, with_max: bool) -> String {
    if m.requests == 0 {
        return "-".to_owned();
    }
    let mut text = format!(
        "{} / {}",
        format_latency(m.p50_us),
        format_latency(m.p99_us)
    );
    if with_max {
        let _ = write!(text, " / {}", format_latency(m.max_us));
    }
    text
}

fn errors(m: &Measurement) -> String {
    format!(
        "{} ({} of {})",
        m.errors_by_status(),
        m.errors(),
        m.requests
    )
}

fn freshness(f: &Freshness) -> String {
    if f.measured() == 0 {
        return format!("- ({} tickets)", f.created);
    }
    format!(
        "{} / {} (max {}; {} tickets)",
        format_latency(f.p50_us),
        format_latency(f.p99_us),
        format_latency(f.max_us),
        f.measured()
    )
}

fn probe_failures(p: &Probes) -> String {
    let mut text = format!("{} / {}", p.unavailable(), p.other_failures());
    if p.other_failures() > 0 {
        let _ = write!(
            text,
            " (reads: {}; creations: {})",
            p.reads.errors_by_status(),
            p.not_created.errors_by_status()
        );
    }
    text
}

fn drain(d: Drain) -> String {
    match d {
        Drain::Drained(after) => seconds(after),
        Drain::TimedOut { waited, behind } => {
            format!("> {} ({behind} events still behind)", seconds(waited))
        }
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// `outbox_backlog_events + consumer_lag_messages`, if either was there.
fn reported(s: &Sample) -> Option<f64> {
    match (s.outbox_backlog, s.consumer_lag) {
        (None, None) => None,
        (backlog, lag) => Some(backlog.unwrap_or(0.0) + lag.unwrap_or(0.0)),
    }
}

fn max_of(samples: &[Sample], phases: &[Phase], value: impl Fn(&Sample) -> Option<f64>) -> String {
    samples
        .iter()
        .filter(|s| phases.contains(&s.phase))
        .filter_map(value)
        .reduce(f64::max)
        .map_or_else(|| "-".to_owned(), |max| format!("{max:.0}"))
}

/// One row a second from the load's start: the samples taken in it and
/// the freshness of the tickets recorded in it.
fn series(o: &Outcome) -> String {
    let mut out = String::from(
        "\n### Pipeline: per second\n\n\
         Second 0 is the load's start (database clock). `tickets` were recorded in that second; \
         their freshness is commit to read model.\n\n\
         | s | phase | tickets | freshness p50 | freshness p99 | outbox_backlog_events | \
         consumer_lag_messages | backlog+lag (database) |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|\n",
    );
    let per_second = match Freshness::per_second(&o.creations, o.origin) {
        Ok(per_second) => per_second,
        Err(error) => {
            let _ = writeln!(out, "\n(no series: {error:#})");
            return out;
        }
    };
    let mut rows: BTreeMap<i64, (Option<&Sample>, Option<&Freshness>)> = BTreeMap::new();
    for sample in o.samples.iter().filter(|s| s.phase != Phase::Settle) {
        let second = (sample.at - o.origin).num_milliseconds().div_euclid(1_000);
        rows.entry(second).or_default().0 = Some(sample);
    }
    for (second, freshness) in &per_second {
        rows.entry(*second).or_default().1 = Some(freshness);
    }
    let cell = |value: Option<String>| value.unwrap_or_else(|| "-".to_owned());
    for (second, (sample, freshness)) in rows.range(0..) {
        let measured = freshness.filter(|f| f.measured() > 0);
        let _ = writeln!(
            out,
            "| {second} | {} | {} | {} | {} | {} | {} | {} |",
            sample.map_or("-", |s| s.phase.name()),
            freshness.map_or(0, |f| f.created),
            cell(measured.map(|f| format_latency(f.p50_us))),
            cell(measured.map(|f| format_latency(f.p99_us))),
            cell(
                sample
                    .and_then(|s| s.outbox_backlog)
                    .map(|v| format!("{v:.0}"))
            ),
            cell(
                sample
                    .and_then(|s| s.consumer_lag)
                    .map(|v| format!("{v:.0}"))
            ),
            cell(sample.and_then(|s| s.behind).map(|v| v.to_string())),
        );
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::{TimeDelta, Utc};

    use super::*;
    use crate::cpu::Usage;
    use crate::pipeline::freshness::Creation;
    use crate::pipeline::Settings;

    fn requests(status: u16, n: usize, ms: u64) -> Vec<(u16, Duration)> {
        vec![(status, Duration::from_millis(ms)); n]
    }

    fn probes(reads: Vec<(u16, Duration)>) -> Probes {
        Probes {
            reads: Measurement::from_requests(reads, Duration::from_secs(10)).unwrap(),
            not_created: Measurement::from_requests([], Duration::from_secs(10)).unwrap(),
            without_token: 0,
        }
    }

    fn outcome() -> Outcome {
        let origin = Utc::now();
        let sample = |second: i64, phase, behind| Sample {
            at: origin + TimeDelta::milliseconds(second * 1_000 + 100),
            phase,
            outbox_backlog: Some(behind as f64 / 2.0),
            consumer_lag: Some(behind as f64 / 2.0),
            behind: Some(behind),
        };
        let creation = |ms: i64, fresh_ms: i64| {
            let recorded_at = origin + TimeDelta::milliseconds(ms);
            Creation {
                recorded_at,
                applied_at: Some(recorded_at + TimeDelta::milliseconds(fresh_ms)),
                updated_since: false,
            }
        };
        let creations = vec![creation(100, 40), creation(1_200, 900)];
        Outcome {
            settings: Settings {
                load: Duration::from_secs(10),
                idle: Duration::from_secs(20),
                idle_rate: 100,
                drain_timeout: Duration::from_secs(180),
            },
            settle: Drain::Drained(Duration::ZERO),
            load: Measurement::from_requests(
                [requests(201, 20_000, 30), requests(503, 5, 1)].concat(),
                Duration::from_secs(10),
            )
            .unwrap(),
            load_cpu: Some(Usage {
                busy: 0.99,
                seconds: vec![("server", 4.0), ("PostgreSQL", 2.0)],
            }),
            load_probes: probes([requests(200, 40, 300), requests(503, 10, 5_000)].concat()),
            drain: Drain::TimedOut {
                waited: Duration::from_secs(180),
                behind: 1_234,
            },
            max_behind: Some(9_000),
            idle: Measurement::from_requests(requests(201, 2_000, 3), Duration::from_secs(20))
                .unwrap(),
            idle_probes: probes(requests(200, 100, 4)),
            after_idle: Drain::Drained(Duration::from_millis(1_500)),
            load_freshness: Freshness::of(&creations).unwrap(),
            idle_freshness: Freshness::default(),
            origin,
            samples: vec![
                sample(-1, Phase::Settle, 0),
                sample(0, Phase::Load, 500),
                sample(1, Phase::Load, 9_000),
                sample(12, Phase::Idle, 30),
            ],
            creations,
        }
    }

    fn reference() -> Reference {
        Reference {
            clients: 32,
            transactions_per_second: 4_000.0,
            transactions: 40_000,
            failed: 0,
            p50_us: 5_000,
            p99_us: 20_000,
            max_us: 40_000,
            cpu: Some(Usage {
                busy: 1.0,
                seconds: vec![("PostgreSQL", 3.0), ("pgbench client", 1.0)],
            }),
        }
    }

    #[test]
    fn the_table_has_the_measured_figures() {
        let rendered = render(&outcome(), Ok(&reference()));
        let table = &rendered.table;
        assert!(
            table.contains("| write req/s (POST /api/tickets) | 2000.5 | 100.0 |"),
            "{table}"
        );
        assert!(
            table.contains("4000.0 commits/s, 32 clients, same run) | 0.50 x | - |"),
            "{table}"
        );
        assert!(
            table.contains(
                "| CPU per write, by process | 300 µs (server 200, PostgreSQL 100; machine 99 % busy) | - |"
            ),
            "{table}"
        );
        assert!(
            table.contains(
                "| CPU per pgbench commit, by process | 100 µs (PostgreSQL 75, pgbench client 25; machine 100 % busy) | - |"
            ),
            "{table}"
        );
        assert!(
            table.contains("| write errors | 503 x5 (5 of 20005) | none (0 of 2000) |"),
            "{table}"
        );
        assert!(table.contains("read model) | 9000 | 30 |"), "{table}");
        assert!(
            table.contains("consumer_lag_messages) | 9000 | 30 |"),
            "{table}"
        );
        assert!(table.contains("| 10 / 0 |"), "{table}");
        assert!(
            table.contains("> 180.0 s (1234 events still behind)"),
            "{table}"
        );
        assert!(table.contains("1.5 s (after the idle run)"), "{table}");
        assert!(table.contains("2 tickets)"), "{table}");
        assert!(table.contains("had not drained"), "{table}");
        assert!(!table.contains("per second"), "{table}");
    }

    #[test]
    fn the_written_report_adds_the_series_from_second_zero() {
        let rendered = render(&outcome(), Err("LOAD_PGBENCH_SECONDS=0"));
        let written = &rendered.with_series;
        assert!(written.starts_with(&rendered.table));
        assert!(
            written.contains("not measured (LOAD_PGBENCH_SECONDS=0)"),
            "{written}"
        );
        assert!(
            written.contains("| 0 | load | 1 | 40 ms | 40 ms | 250 | 250 | 500 |"),
            "{written}"
        );
        assert!(
            written.contains("| 1 | load | 1 | 900 ms | 900 ms | 4500 | 4500 | 9000 |"),
            "{written}"
        );
        assert!(
            written.contains("| 12 | idle | 0 | - | - | 15 | 15 | 30 |"),
            "{written}"
        );
        assert!(!written.contains("| -1 |"), "{written}");
    }
}
