//! The results as a Markdown table, beside the original platform's
//! published figures, and the create-ticket scenario against PostgreSQL's
//! own insert-only limit.

use std::fmt::Write as _;

use crate::attack::{Outcome, JOURNEY_STEPS};
use crate::measurement::{format_latency, Measurement};
use crate::pgbench::Reference;
use crate::profile::{Profile, Published, Scenario};

/// The project's target for create-ticket against the pgbench reference.
pub(crate) const TARGET_FRACTION: f64 = 0.6;
pub(crate) const TARGET_P99_US: u64 = 50_000;

pub(crate) struct Context {
    pub(crate) profile: Profile,
    pub(crate) date: String,
    pub(crate) machine: String,
    pub(crate) target: String,
    pub(crate) pool_size: Option<u32>,
}

pub(crate) struct Report<'a> {
    pub(crate) context: &'a Context,
    pub(crate) results: &'a [(Scenario, Outcome)],
    /// The pgbench reference, or why there is none.
    pub(crate) reference: Result<&'a Reference, String>,
}

impl Report<'_> {
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let c = self.context;
        let _ = writeln!(
            out,
            "## Load scenarios: profile `{}`, {}, {}\n\nTarget: {}; server pool (DATABASE_MAX_CONNECTIONS): {}.\n",
            c.profile,
            c.date,
            c.machine,
            c.target,
            c.pool_size
                .map_or_else(|| "server default".to_owned(), |n| n.to_string())
        );
        // The pipeline scenario alone has a table of its own, not a row.
        if self.results.is_empty() {
            out.push_str(&self.reference_section());
            return out;
        }
        out.push_str(
            "| scenario | requests | users | run | req/s | p50 | p95 | p99 | max | errors by status | original published |\n\
             |---|---|---:|---:|---:|---:|---:|---:|---:|---|---|\n",
        );
        for (scenario, outcome) in self.results {
            row(
                &mut out,
                scenario.name(),
                scenario.describe(),
                Some((scenario.users(), scenario.duration(c.profile).as_secs())),
                &outcome.total,
                &scenario
                    .published()
                    .map_or_else(|| "-".to_owned(), published),
            );
            for (step, measured) in &outcome.steps {
                row(&mut out, &format!("  {step}"), "", None, measured, "");
            }
        }
        out.push('\n');
        for note in self.notes() {
            let _ = writeln!(out, "- {note}");
        }
        out.push_str(&self.reference_section());
        out
    }

    fn notes(&self) -> Vec<String> {
        let mut notes = vec![
            "req/s counts every request answered in the window after all users had started \
             (errors included, as oha counts them); latencies from goose's log-linear \
             histogram (bucket width <= 1/64 of the value)."
                .to_owned(),
        ];
        for (scenario, outcome) in self.results {
            if *scenario != Scenario::Journey {
                continue;
            }
            if let Some((_, payments)) = outcome.steps.iter().find(|(s, _)| s == JOURNEY_STEPS[2]) {
                if payments.requests > 0 && payments.count_of(404) == payments.requests {
                    notes.push(format!(
                        "journey: POST /api/payments answered 404 to all {} requests: \
                         the payments endpoint is missing from this build, so no journey completed \
                         (the list-orders step still ran).",
                        payments.requests
                    ));
                }
            }
        }
        notes
    }

    fn reference_section(&self) -> String {
        let mut out = String::from("\n## Physical limit: PostgreSQL alone (pgbench)\n\n");
        let reference = match &self.reference {
            Ok(reference) => *reference,
            Err(why) => {
                let _ = writeln!(out, "Not measured: {why}.");
                return out;
            }
        };
        let _ = writeln!(
            out,
            "Insert-only script (`benches/load/pgbench_insert.sql`, one event-sized row per \
             autocommitted transaction), {} clients (the create-ticket scenario's database \
             concurrency: the server's pool).\n",
            reference.clients
        );
        out.push_str(
            "| | per second | p50 | p99 | max | errors |\n|---|---:|---:|---:|---:|---|\n",
        );
        let _ = writeln!(
            out,
            "| pgbench insert-only, {} clients | {:.1} commits | {} | {} | {} | {} failed of {} |",
            reference.clients,
            reference.transactions_per_second,
            format_latency(reference.p50_us),
            format_latency(reference.p99_us),
            format_latency(reference.max_us),
            reference.failed,
            reference.transactions
        );
        let create = self
            .results
            .iter()
            .find(|(scenario, _)| *scenario == Scenario::CreateTicket);
        let Some((scenario, outcome)) = create else {
            out.push_str("\n(create-ticket was not run, so there is no fraction here.)\n");
            return out;
        };
        let m = &outcome.total;
        let _ = writeln!(
            out,
            "| create-ticket, {} users | {:.1} requests | {} | {} | {} | {} |",
            scenario.users(),
            m.requests_per_second(),
            format_latency(m.p50_us),
            format_latency(m.p99_us),
            format_latency(m.max_us),
            m.errors_by_status()
        );
        let fraction = m.requests_per_second() / reference.transactions_per_second;
        let mut misses = Vec::new();
        if fraction < TARGET_FRACTION {
            misses.push(format!("throughput {fraction:.2} < {TARGET_FRACTION}"));
        }
        if m.p99_us >= TARGET_P99_US {
            misses.push(format!("p99 {} >= 50 ms", format_latency(m.p99_us)));
        }
        if m.errors() > 0 {
            misses.push(format!("{} errors", m.errors()));
        }
        let verdict = if misses.is_empty() {
            "met".to_owned()
        } else {
            format!("not met ({})", misses.join("; "))
        };
        let _ = writeln!(
            out,
            "\ncreate-ticket = **{fraction:.2} x** PostgreSQL's insert-only commits/s. \
             Target (>= {TARGET_FRACTION} x, p99 < 50 ms, no errors): **{verdict}**."
        );
        out
    }
}

fn row(
    out: &mut String,
    name: &str,
    describe: &str,
    shape: Option<(usize, u64)>,
    m: &Measurement,
    original: &str,
) {
    let (users, run) = shape.map_or((String::new(), String::new()), |(users, seconds)| {
        (users.to_string(), format!("{seconds} s"))
    });
    let errors = format!(
        "{} ({} of {}, {:.1}%)",
        m.errors_by_status(),
        m.errors(),
        m.requests,
        m.error_percent()
    );
    let _ = writeln!(
        out,
        "| {name} | {describe} | {users} | {run} | {:.1} | {} | {} | {} | {} | {errors} | {original} |",
        m.requests_per_second(),
        format_latency(m.p50_us),
        format_latency(m.p95_us),
        format_latency(m.p99_us),
        format_latency(m.max_us),
    );
}

fn published(p: Published) -> String {
    let mut parts = vec![format!("{} req/s", p.requests_per_second)];
    let ms = |label: &str, value: Option<f64>| {
        value.map(|v| format!("{label} {}", format_latency((v * 1_000.0) as u64)))
    };
    parts.extend(ms("p50", p.p50_ms));
    parts.extend(ms("p95", p.p95_ms));
    parts.extend(ms("p99", p.p99_ms));
    if let Some((failed, total)) = p.errors {
        parts.push(format!("{failed} errors of {total}"));
    }
    if let Some(percent) = p.failed_percent {
        parts.push(format!("{percent}% failed"));
    }
    parts.join(", ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;

    fn measured(requests: u64, p99_us: u64, errors: u64) -> Measurement {
        let mut statuses = BTreeMap::from([(201, requests - errors)]);
        if errors > 0 {
            let _ = statuses.insert(500, errors);
        }
        Measurement {
            requests,
            window: Duration::from_secs(10),
            p50_us: p99_us / 4,
            p95_us: p99_us / 2,
            p99_us,
            max_us: p99_us * 2,
            statuses,
        }
    }

    fn context() -> Context {
        Context {
            profile: Profile::Short,
            date: "2026-01-01".to_owned(),
            machine: "2 cores".to_owned(),
            target: "test".to_owned(),
            pool_size: Some(32),
        }
    }

    fn reference() -> Reference {
        Reference {
            clients: 32,
            transactions_per_second: 1_000.0,
            transactions: 10_000,
            failed: 0,
            p50_us: 5_000,
            p99_us: 20_000,
            max_us: 40_000,
            cpu: None,
        }
    }

    #[test]
    fn create_ticket_is_judged_against_the_reference() {
        let reference = reference();
        let context = context();
        let results = vec![(
            Scenario::CreateTicket,
            Outcome {
                total: measured(7_000, 40_000, 0),
                steps: Vec::new(),
            },
        )];
        let report = Report {
            context: &context,
            results: &results,
            reference: Ok(&reference),
        }
        .render();
        assert!(report.contains("**0.70 x**"), "{report}");
        assert!(report.contains("**met**"), "{report}");
        assert!(report.contains("55.5 req/s, p50 1.40 s, p99 50.9 s, 51 errors of 2650"));

        let results = vec![(
            Scenario::CreateTicket,
            Outcome {
                total: measured(3_000, 900_000, 2),
                steps: Vec::new(),
            },
        )];
        let report = Report {
            context: &context,
            results: &results,
            reference: Ok(&reference),
        }
        .render();
        assert!(
            report.contains("not met (throughput 0.30 < 0.6; p99 900 ms >= 50 ms; 2 errors)"),
            "{report}"
        );
    }

    #[test]
    fn a_journey_whose_payments_all_404_says_the_endpoint_is_missing() {
        let context = context();
        let mut missing = measured(50, 1_000, 0);
        missing.statuses = BTreeMap::from([(404, 50)]);
        let results = vec![(
            Scenario::Journey,
            Outcome {
                total: measured(200, 1_000, 0),
                steps: vec![(JOURNEY_STEPS[2].to_owned(), missing)],
            },
        )];
        let report = Report {
            context: &context,
            results: &results,
            reference: Err("pgbench not found".to_owned()),
        }
        .render();
        assert!(report.contains("payments endpoint is missing"), "{report}");
        assert!(
            report.contains("Not measured: pgbench not found."),
            "{report}"
        );
    }
}
