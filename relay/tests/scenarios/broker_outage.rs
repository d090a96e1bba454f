use std::collections::HashSet;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::common::{
    assert_consumer_view, load, read_all, relay_config, OwnedBroker, RunningRelay, TestDb,
    TestResult,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_broker_delays_publication_but_loses_nothing() -> TestResult {
    // Arrange
    let db = TestDb::create().await?;
    let broker = OwnedBroker::start()?;
    let config = relay_config(&broker.brokers());
    let relay = RunningRelay::spawn(&db.pool, &config);
    let _ = load::ticket_commands(&db.pool, 100, 5, 16).await?;
    db.drained(Duration::from_secs(30)).await?;

    // Act: commands keep committing while the broker is frozen.
    broker.pause()?;
    let during = load::ticket_commands(&db.pool, 100, 5, 16).await?;
    let published_while_paused = relay.metrics.snapshot().events_published;
    let backlog_while_paused = db.pending().await?;
    broker.resume()?;
    let resumed = Instant::now();
    db.drained(Duration::from_secs(60)).await?;
    let drained_in = resumed.elapsed();
    let received = read_all(
        &config.brokers,
        &[&config.topics.tickets],
        1_000,
        Duration::from_secs(30),
    )
    .await?;

    // Assert
    assert_eq!(
        during, 500,
        "every command succeeded while the broker was paused"
    );
    assert!(backlog_while_paused > 0);
    assert!(
        published_while_paused <= 500,
        "nothing acknowledged while paused"
    );
    let duplicates = assert_consumer_view(&received, &db.events().await?)?;
    println!("paused broker: backlog {backlog_while_paused} drained {drained_in:?} after SIGCONT, {duplicates} re-sent");
    relay.stop().await?;
    db.drop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_and_restarted_empty_receives_everything_not_yet_acknowledged() -> TestResult
{
    // Arrange: failed sends give up after 3 s, so recovery is quick.
    let db = TestDb::create().await?;
    let mut broker = OwnedBroker::start()?;
    let mut config = relay_config(&broker.brokers());
    config.message_timeout = Duration::from_secs(3);
    let relay = RunningRelay::spawn(&db.pool, &config);
    let _ = load::ticket_commands(&db.pool, 100, 5, 16).await?;
    db.drained(Duration::from_secs(30)).await?;

    let acknowledged: HashSet<Uuid> = db.events().await?.into_iter().map(|e| e.0).collect();

    // Act: kill it, commit while it is gone, bring back an empty one.
    broker.kill()?;
    let while_dead = load::ticket_commands(&db.pool, 100, 5, 16).await?;
    let unacknowledged = db.events_after_cursor().await?;
    broker.restart()?;
    let restarted = Instant::now();
    let after_restart = load::ticket_commands(&db.pool, 100, 5, 16).await?;
    db.drained(Duration::from_secs(90)).await?;
    let recovered_in = restarted.elapsed();
    // What the dead broker had acknowledged died with its memory.
    let expected: Vec<_> = db
        .events()
        .await?
        .into_iter()
        .filter(|e| !acknowledged.contains(&e.0))
        .collect();
    let received = read_all(
        &config.brokers,
        &[&config.topics.tickets],
        1_000,
        Duration::from_secs(30),
    )
    .await?;

    // Assert
    assert_eq!(while_dead + after_restart, 1_000);
    assert_eq!(
        unacknowledged.len(),
        500,
        "nothing acknowledged by a dead broker"
    );
    assert_eq!(expected.len(), 1_000);
    let duplicates = assert_consumer_view(&received, &expected)?;
    println!("killed broker: recovered {recovered_in:?} after restart, {duplicates} re-sent");
    relay.stop().await?;
    db.drop().await
}
