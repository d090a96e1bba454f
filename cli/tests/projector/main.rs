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
