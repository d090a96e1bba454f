//! The real `ticketing project` processes: two share a consumer group, one
//! is killed with SIGKILL mid-stream, and nothing is lost; the survivor
//! stops on SIGTERM with its offsets committed.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod helpers;

use std::time::Duration;

use helpers::{eventually, Setup, Worker};

/// Tickets produced, each with [`EVENTS_PER_TICKET`] events.
const TICKETS: usize = 3_000;
const EVENTS_PER_TICKET: usize = 5;

#[tokio::test]
async fn a_worker_killed_mid_stream_loses_nothing() -> anyhow::Result<()> {
    let setup = Setup::create().await?;
    let total = i64::try_from(TICKETS * EVENTS_PER_TICKET)?;
    let mut first = Worker::start(&setup)?;
    let mut second = Worker::start(&setup)?;
    // Produced once both joined would be best, but a process cannot be
    // asked; producing right away lets the kill land mid-stream instead.
    setup.produce_tickets(TICKETS, EVENTS_PER_TICKET).await?;

    eventually(Duration::from_secs(60), || async {
        Ok(setup.applied_events().await? > 0)
    })
    .await?;
    first.kill()?;
    let at_kill = setup.applied_events().await?;
    assert!(
        at_kill < total,
        "the stream was over before the kill ({at_kill})"
    );

    // The survivor takes over the dead worker's partitions once its
    // session times out, and re-projects whatever it had not committed.
    eventually(Duration::from_secs(90), || async {
        Ok(setup.applied_events().await? == total)
    })
    .await?;
    assert_eq!(setup.views().await?, i64::try_from(TICKETS)?);

    second.terminate()?;
    let status = second.wait(Duration::from_secs(20)).await?;
    assert!(status.success(), "SIGTERM exit: {status}");
    assert_eq!(
        setup.committed().await?,
        total,
        "offsets committed on SIGTERM"
    );
    setup.drop().await
}

/// The sum of the samples of `name` whose labels contain `label`, in
/// Prometheus text.
fn sum_of(metrics: &str, name: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_worker_serves_its_probes_and_metrics() -> anyhow::Result<()> {
    let setup = Setup::create().await?;
    let worker = Worker::start(&setup)?;
    let base = format!("http://127.0.0.1:{}", worker.metrics_port);
    let http = reqwest::Client::new();
    let ready = || {
        let request = http.get(format!("{base}/readyz")).send();
        async move {
            Ok(request
                .await
                .is_ok_and(|r| r.status() == reqwest::StatusCode::OK))
        }
    };
    eventually(Duration::from_secs(60), ready).await?;

    setup.produce_tickets(10, 2).await?;
    eventually(Duration::from_secs(60), || async {
        Ok(setup.applied_events().await? == 20)
    })
    .await?;

    let live = http.get(format!("{base}/healthz")).send().await?;
    assert_eq!(live.status(), reqwest::StatusCode::OK);
    let metrics = http.get(format!("{base}/metrics")).send().await?;
    assert_eq!(metrics.status(), reqwest::StatusCode::OK);
    let text = metrics.text().await?;
    let applied = sum_of(&text, "events_processed_total", "outcome=\"applied\"");
    assert!(
        (applied - 20.0).abs() < f64::EPSILON,
        "applied = {applied}\n{text}"
    );
    assert!(text.contains("consumer_lag_messages{"), "{text}");
    assert!(
        text.contains("command_to_read_model_seconds_bucket{"),
        "{text}"
    );
    drop(worker);
    setup.drop().await
}
