//! `ticketing replay`: rebuilds against a live system (relay, projector and
//! gateway running on the same database), resuming, dry runs, republishing.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod dlq;
mod helpers;

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use helpers::{eventually, Live};
use ticketing_gateway::{Application, GatewaySettings};
use ticketing_projections::rebuild::{RebuildOutcome, RebuildPlan, Rebuilder};
use ticketing_projections::AggregateKind;
use ticketing_relay::{HistoryFilter, RepublishOutcome, RepublishPlan, Republisher};
use tokio_util::sync::CancellationToken;

const ALL: [AggregateKind; 3] = [
    AggregateKind::Ticket,
    AggregateKind::Order,
    AggregateKind::Payment,
];

async fn rebuild(live: &Live, batch: u32) -> anyhow::Result<RebuildOutcome> {
    let rebuilder = Rebuilder::new(live.pool.clone(), RebuildPlan::new(&ALL, batch));
    let start = rebuilder.start().await?;
    Ok(rebuilder
        .run(&start, &CancellationToken::new(), |_| {})
        .await?)
}

async fn shadow_left(live: &Live) -> anyhow::Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'replay_shadow')",
    )
    .fetch_one(&live.pool)
    .await?)
}

async fn checkpoints(live: &Live) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM replay_checkpoints")
            .fetch_one(&live.pool)
            .await?,
    )
}

/// GETs the list and one ticket in a loop until `stop`; counts answers
/// and failures (anything but 200).
fn query_loop(
    base: String,
    ticket: String,
    stop: CancellationToken,
) -> (Arc<AtomicU64>, Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (ok2, failed2) = (ok.clone(), failed.clone());
    let task = tokio::spawn(async move {
        let client = reqwest::Client::new();
        while !stop.is_cancelled() {
            for path in ["/api/tickets".to_owned(), format!("/api/tickets/{ticket}")] {
                let response = client.get(format!("{base}{path}")).send().await;
                match response {
                    Ok(r) if r.status() == reqwest::StatusCode::OK => {
                        let _ = ok2.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        let _ = failed2.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    });
    (ok, failed, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebuild_matches_the_live_read_models_while_queries_and_projection_go_on(
) -> anyhow::Result<()> {
    let live = Live::start().await?;
    let events = live.mixed_workload(40).await?;
    live.caught_up().await?;
    let before = live.read_models().await?;
    let schema = live.schema().await?;
    assert!(before.len() > 80, "a real workload: {} rows", before.len());

    // The gateway serves the same database throughout.
    let mut settings = GatewaySettings::local("test-key-test-key-test-key-test-key");
    settings.port = 0;
    let app = Application::build(settings, live.pool.clone()).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    let stop_app = CancellationToken::new();
    let stopping = stop_app.clone();
    let server = tokio::spawn(app.run_until_stopped(async move { stopping.cancelled().await }));
    let ticket: String = sqlx::query_scalar("SELECT id FROM ticket_views LIMIT 1")
        .fetch_one(&live.pool)
        .await?;
    let stop_queries = CancellationToken::new();
    let (ok, failed, queries) = query_loop(base, ticket, stop_queries.clone());
    eventually(Duration::from_secs(10), || async {
        Ok(ok.load(Ordering::Relaxed) > 0)
    })
    .await?;

    // Small batches: many transactions, each one a chance for a query.
    let answered_before = ok.load(Ordering::Relaxed);
    let outcome = rebuild(&live, 17).await?;
    let answered_during = ok.load(Ordering::Relaxed) - answered_before;
    assert_eq!(
        outcome,
        RebuildOutcome::Finished {
            events: u64::try_from(events)?,
            caught_up: 0
        }
    );
    assert_eq!(live.read_models().await?, before, "rebuilt = live");
    assert_eq!(live.schema().await?, schema, "same indexes and names");
    assert!(!shadow_left(&live).await?);
    assert_eq!(checkpoints(&live).await?, 0);

    // Again while commands keep coming: the live projector keeps applying
    // during the rebuild and after the swap, and nothing is lost.
    let writer = {
        let more = Live::workload_on(&live);
        tokio::spawn(async move { more.run(30).await })
    };
    let outcome = rebuild(&live, 13).await?;
    writer.await??;
    assert!(matches!(outcome, RebuildOutcome::Finished { .. }));
    live.caught_up().await?;
    let events = live.events().await?;
    assert_eq!(live.applied().await?, events);

    stop_queries.cancel();
    queries.await?;
    stop_app.cancel();
    server.await??;
    assert_eq!(failed.load(Ordering::Relaxed), 0, "every GET answered 200");
    assert!(answered_during > 0, "queries answered during the rebuild");
    live.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_rebuild_resumes_where_it_stopped() -> anyhow::Result<()> {
    let live = Live::start().await?;
    let events = u64::try_from(live.mixed_workload(30).await?)?;
    live.caught_up().await?;
    let before = live.read_models().await?;

    let rebuilder = Rebuilder::new(live.pool.clone(), RebuildPlan::new(&ALL, 10));
    let start = rebuilder.start().await?;
    assert_eq!(start.resumed, None);
    assert_eq!(start.remaining, events);
    // Ctrl-C after the second batch.
    let stop = CancellationToken::new();
    let mut batches = 0;
    let outcome = rebuilder
        .run(&start, &stop, |_| {
            batches += 1;
            if batches == 2 {
                stop.cancel();
            }
        })
        .await?;
    assert_eq!(outcome, RebuildOutcome::Interrupted { events: 20 });
    assert!(shadow_left(&live).await?);
    assert_eq!(checkpoints(&live).await?, 1);
    assert_eq!(live.read_models().await?, before, "live tables untouched");

    let start = rebuilder.start().await?;
    assert_eq!(start.resumed.as_ref().map(|c| c.done), Some(20));
    assert_eq!(start.remaining, events - 20);
    let outcome = rebuilder
        .run(&start, &CancellationToken::new(), |_| {})
        .await?;
    assert_eq!(
        outcome,
        RebuildOutcome::Finished {
            events,
            caught_up: 0
        }
    );
    assert_eq!(live.read_models().await?, before);
    assert!(!shadow_left(&live).await?);
    assert_eq!(checkpoints(&live).await?, 0);
    live.stop().await
}

fn replay(live: &Live, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ticketing"))
        .arg("replay")
        .args(args)
        .env("DATABASE_URL", live.url())
        .env("KAFKA_BROKERS", &live.relay.brokers)
        .env("TICKETS_TOPIC", &live.relay.topics.tickets)
        .env("ORDERS_TOPIC", &live.relay.topics.orders)
        .env("PAYMENTS_TOPIC", &live.relay.topics.payments)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_rebuilds_dry_runs_change_nothing_and_usage_errors_exit_2() -> anyhow::Result<()> {
    let live = Live::start().await?;
    let events = live.mixed_workload(20).await?;
    live.caught_up().await?;
    let before = live.read_models().await?;

    for args in [
        &["rebuild", "--dry-run"][..],
        &["rebuild", "--view", "orders", "--dry-run"],
        &["republish", "--from-position", "1", "--dry-run"],
    ] {
        let output = replay(&live, args);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{args:?}: {output:?}");
        assert!(stdout.contains("dry run"), "{args:?}: {stdout}");
    }
    let output = replay(&live, &["rebuild", "--dry-run"]);
    assert!(
        String::from_utf8_lossy(&output.stdout).contains(&format!("from {events} events")),
        "{output:?}"
    );
    assert_eq!(live.read_models().await?, before);
    assert!(!shadow_left(&live).await?);
    assert_eq!(checkpoints(&live).await?, 0);

    for args in [
        &["republish"][..],
        &["rebuild", "--view", "users"],
        &[
            "republish",
            "--from-position",
            "1",
            "--topic-suffix",
            "v2",
            "--to-topic",
            "x",
        ],
    ] {
        assert_eq!(replay(&live, args).status.code(), Some(2), "{args:?}");
    }

    let output = replay(&live, &["rebuild", "--view", "all"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(live.read_models().await?, before);
    live.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_a_deleted_row_and_a_stale_one_and_repair_fixes_both() -> anyhow::Result<()>
{
    // Arrange: everything projected, then the workers stopped (their own
    // sweep would repair the rows first) and two rows damaged by hand.
    let mut live = Live::start().await?;
    let _ = live.mixed_workload(20).await?;
    live.caught_up().await?;
    let before = live.read_models().await?;
    live.stop_workers().await?;
    let deleted: String = sqlx::query_scalar("SELECT id FROM ticket_views ORDER BY id LIMIT 1")
        .fetch_one(&live.pool)
        .await?;
    let stale: String = sqlx::query_scalar(
        "SELECT id FROM order_views WHERE last_sequence > 1 ORDER BY id LIMIT 1",
    )
    .fetch_one(&live.pool)
    .await?;
    let _ = sqlx::query("DELETE FROM ticket_views WHERE id = $1")
        .bind(&deleted)
        .execute(&live.pool)
        .await?;
    let _ = sqlx::query(
        "UPDATE order_views SET last_sequence = last_sequence - 1, status = 'created' WHERE id = $1",
    )
    .bind(&stale)
    .execute(&live.pool)
    .await?;

    // Act
    let found = replay(&live, &["verify", "--json"]);
    let repaired = replay(&live, &["verify", "--repair"]);
    let again = replay(&live, &["verify"]);

    // Assert
    assert_eq!(found.status.code(), Some(3), "{found:?}");
    let report: serde_json::Value = serde_json::from_slice(&found.stdout)?;
    let mut differences: Vec<(String, String, String)> = report["differences"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            (
                d["view"].as_str().unwrap_or_default().to_owned(),
                d["aggregate_id"].as_str().unwrap_or_default().to_owned(),
                d["kind"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    differences.sort();
    assert_eq!(
        differences,
        vec![
            ("order_views".to_owned(), stale.clone(), "behind".to_owned()),
            (
                "ticket_views".to_owned(),
                deleted.clone(),
                "missing".to_owned()
            ),
        ]
    );
    assert_eq!(repaired.status.code(), Some(3), "{repaired:?}");
    assert!(
        String::from_utf8_lossy(&repaired.stdout).contains("2 differ; repaired"),
        "{repaired:?}"
    );
    assert_eq!(again.status.code(), Some(0), "{again:?}");
    assert_eq!(live.read_models().await?, before);
    live.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn republishing_changes_no_read_model() -> anyhow::Result<()> {
    let live = Live::start().await?;
    let events = u64::try_from(live.mixed_workload(20).await?)?;
    live.caught_up().await?;
    let before = live.read_models().await?;
    let duplicates = live.projector.snapshot().duplicates_skipped;

    let plan = RepublishPlan {
        filter: HistoryFilter::default(),
        topics: live.relay.topics.clone(),
        batch_size: 50,
    };
    let republisher = Republisher::new(live.pool.clone(), plan, &live.relay);
    let start = republisher.start().await?;
    assert_eq!(start.remaining, events);
    let outcome = republisher
        .run(&start, &CancellationToken::new(), |_| {})
        .await?;
    assert_eq!(outcome, RepublishOutcome::Finished { published: events });
    // The projector sees every event again and skips each as a duplicate.
    eventually(Duration::from_secs(60), || async {
        Ok(live.projector.snapshot().duplicates_skipped - duplicates >= events)
    })
    .await?;
    assert_eq!(live.read_models().await?, before);
    assert_eq!(checkpoints(&live).await?, 0, "a finished run forgets it");
    live.stop().await
}
