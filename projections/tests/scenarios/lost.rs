//! The broker loses what it acknowledged; the read model still converges on
//! the event store (issue 19). The relay and the workers run in this
//! process, commands go through the real write path. (The broker restarted
//! under load is `cli/tests/e2e/broker_loss.rs`, with the real binary: the
//! consumer may crash there, see docs/broker.md.)

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use sqlx::PgPool;
use ticketing_aggregates::{Money, Ticket, TicketCommand, Title};
use ticketing_eventstore::{CommandExecutor, CommandMetadata};
use ticketing_projections::reconcile::follow::follow_step;
use ticketing_projections::ProjectionConfig;
use ticketing_relay::{provision_topics, Cursor, Relay, RelayConfig};
use tokio_util::sync::CancellationToken;

use crate::common::{self, eventually, RunningProjector, TestDb, TestResult};

/// A worker that checks itself against the store soon after the relay
/// published (the default grace is seconds).
fn quick_to_heal(brokers: &str) -> ProjectionConfig {
    let mut config = common::config();
    config.brokers = brokers.to_owned();
    config.follow.grace = Duration::from_millis(300);
    config.follow.interval = Duration::from_millis(100);
    config
}

fn relay_config(projection: &ProjectionConfig) -> RelayConfig {
    RelayConfig {
        brokers: projection.brokers.clone(),
        topics: projection.topics.clone(),
        partitions: projection.partitions,
        poll_interval: Duration::from_millis(50),
        message_timeout: Duration::from_secs(3),
        ..RelayConfig::default()
    }
}

struct RunningRelay {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl RunningRelay {
    fn spawn(pool: &PgPool, config: &RelayConfig) -> Self {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(
            Relay::new(pool.clone(), config.clone()).run_until_stopped(shutdown.clone()),
        );
        Self { shutdown, task }
    }

    async fn stop(self) -> TestResult {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.task).await??;
        Ok(())
    }
}

/// Creates `count` tickets and retitles each: two events per ticket.
async fn tickets(pool: &PgPool, prefix: &str, count: usize) -> anyhow::Result<()> {
    let executor = CommandExecutor::<Ticket>::new(pool.clone(), ());
    let metadata = CommandMetadata::default();
    for n in 0..count {
        let id = uuid::Uuid::new_v4().to_string();
        let _ = executor
            .execute(
                &id,
                TicketCommand::Create {
                    title: Title::parse(&format!("{prefix} {n}"))?,
                    price: Money::from_cents(1_000)?,
                    user_id: "seller".to_owned(),
                },
                &metadata,
            )
            .await?;
        let _ = executor
            .execute(
                &id,
                TicketCommand::Update {
                    title: Title::parse(&format!("{prefix} {n}, updated"))?,
                    price: Money::from_cents(1_500)?,
                    user_id: "seller".to_owned(),
                },
                &metadata,
            )
            .await?;
    }
    Ok(())
}

/// Every ticket of the store in the view, exactly as its two events make
/// it: the number of rows that are not.
async fn tickets_not_converged(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT aggregate_id, max(sequence) AS seq FROM events \
                                WHERE aggregate_type = 'Ticket' GROUP BY aggregate_id) s \
         LEFT JOIN ticket_views v ON v.id = s.aggregate_id \
         WHERE v.id IS NULL OR v.last_sequence <> s.seq OR v.version <> 1 \
            OR v.price_cents <> 1500 OR v.title NOT LIKE '%, updated'",
    )
    .fetch_one(pool)
    .await?)
}

async fn relay_caught_up(pool: &PgPool) -> anyhow::Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT coalesce((SELECT global_position FROM relay_cursor), 0) \
              >= (SELECT coalesce(max(global_position), 0) FROM events)",
    )
    .fetch_one(pool)
    .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_recreated_while_the_projection_was_stopped_are_healed_from_the_store() -> TestResult
{
    // Arrange: a relay and a worker on the shared broker, caught up.
    let db = TestDb::create().await?;
    let config = quick_to_heal(&common::brokers());
    let relay_config = relay_config(&config);
    let relay = RunningRelay::spawn(&db.pool, &relay_config);
    let worker = RunningProjector::spawn(&db.pool, &config)?;
    worker.joined().await?;
    tickets(&db.pool, "Kept", 20).await?;
    eventually(Duration::from_secs(30), || async {
        Ok(tickets_not_converged(&db.pool).await? == 0)
    })
    .await?;
    worker.stop().await?;

    // Act: more tickets, published while the worker is stopped; then the
    // topics are deleted and recreated, losing them.
    tickets(&db.pool, "Lost", 30).await?;
    eventually(Duration::from_secs(30), || relay_caught_up(&db.pool)).await?;
    relay.stop().await?;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .create()?;
    let topics = config.topics.all();
    for outcome in admin.delete_topics(&topics, &AdminOptions::new()).await? {
        let _ =
            outcome.map_err(|(topic, code)| anyhow::anyhow!("cannot delete {topic}: {code}"))?;
    }
    provision_topics(&relay_config).await?;
    let worker = RunningProjector::spawn(&db.pool, &config)?;

    // Assert: the 30 tickets the topics lost are healed from the store.
    eventually(Duration::from_secs(60), || async {
        Ok(tickets_not_converged(&db.pool).await? == 0)
    })
    .await?;
    assert_eq!(db.applied_events().await?, 2 * 50);
    let snapshot = worker.metrics.snapshot();
    assert_eq!(snapshot.store_divergences, 30, "{snapshot:?}");
    assert_eq!(snapshot.store_healed_events, 60, "{snapshot:?}");
    worker.stop().await?;
    db.drop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_heals_a_row_deleted_by_hand_and_a_row_set_back() -> TestResult {
    // Arrange: everything projected.
    let db = TestDb::create().await?;
    let mut config = quick_to_heal(&common::brokers());
    config.sweep.interval = Duration::from_millis(100);
    let relay = RunningRelay::spawn(&db.pool, &relay_config(&config));
    let worker = RunningProjector::spawn(&db.pool, &config)?;
    worker.joined().await?;
    tickets(&db.pool, "Swept", 10).await?;
    eventually(Duration::from_secs(30), || async {
        Ok(tickets_not_converged(&db.pool).await? == 0)
    })
    .await?;

    // Act: one row removed, one set back to its first event.
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM ticket_views ORDER BY id LIMIT 2")
        .fetch_all(&db.pool)
        .await?;
    let _ = sqlx::query("DELETE FROM ticket_views WHERE id = $1")
        .bind(&ids[0])
        .execute(&db.pool)
        .await?;
    let _ = sqlx::query(
        "UPDATE ticket_views SET last_sequence = 1, version = 0, title = 'old' WHERE id = $1",
    )
    .bind(&ids[1])
    .execute(&db.pool)
    .await?;

    // Assert
    eventually(Duration::from_secs(30), || async {
        Ok(tickets_not_converged(&db.pool).await? == 0)
    })
    .await?;
    assert!(worker.metrics.snapshot().store_divergences >= 2);
    worker.stop().await?;
    relay.stop().await?;
    db.drop().await
}

/// The sweep yields to a lagging worker: with a bound no lag is under, a
/// row deleted by hand stays missing for many sweep intervals (the sweep
/// above heals it within one); a second worker with the default bound
/// heals it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_waits_while_the_worker_lags() -> TestResult {
    // Arrange: everything projected by a worker whose sweep always yields.
    let db = TestDb::create().await?;
    let mut config = quick_to_heal(&common::brokers());
    config.sweep.interval = Duration::from_millis(100);
    config.sweep.yield_lag = -1;
    config.sweep.max_defer = Duration::from_secs(3_600);
    let relay = RunningRelay::spawn(&db.pool, &relay_config(&config));
    let worker = RunningProjector::spawn(&db.pool, &config)?;
    worker.joined().await?;
    tickets(&db.pool, "Yielding", 10).await?;
    // Converged, and followed: the follower will not look at these events
    // again, so only the sweep can heal what is removed below.
    eventually(Duration::from_secs(30), || async {
        let followed: bool = sqlx::query_scalar(
            "SELECT coalesce((SELECT max(global_position) FROM read_side_cursor) \
                             >= (SELECT max(global_position) FROM events), false)",
        )
        .fetch_one(&db.pool)
        .await?;
        Ok(followed && tickets_not_converged(&db.pool).await? == 0)
    })
    .await?;

    // Act: one row removed.
    let _ = sqlx::query(
        "DELETE FROM ticket_views WHERE id = (SELECT id FROM ticket_views ORDER BY id LIMIT 1)",
    )
    .execute(&db.pool)
    .await?;

    // Assert: twenty intervals later it is still missing ...
    tokio::time::sleep(config.sweep.interval * 20).await;
    assert_eq!(tickets_not_converged(&db.pool).await?, 1);
    worker.stop().await?;
    // ... and a worker that does not yield heals it.
    config.sweep.yield_lag = ProjectionConfig::default().sweep.yield_lag;
    let worker = RunningProjector::spawn(&db.pool, &config)?;
    eventually(Duration::from_secs(30), || async {
        Ok(tickets_not_converged(&db.pool).await? == 0)
    })
    .await?;
    worker.stop().await?;
    relay.stop().await?;
    db.drop().await
}

async fn cursor_of(pool: &PgPool, order: &str) -> anyhow::Result<Cursor> {
    let (transaction_id, global_position): (i64, i64) = sqlx::query_as(&format!(
        "SELECT transaction_id::text::bigint, global_position FROM events \
         ORDER BY transaction_id {order}, global_position {order} LIMIT 1"
    ))
    .fetch_one(pool)
    .await?;
    Ok(Cursor {
        transaction_id,
        global_position,
    })
}

#[tokio::test]
async fn a_worker_with_an_older_view_of_the_relay_leaves_the_position_alone() -> TestResult {
    // Arrange: three tickets, all published, all followed by one worker.
    let db = TestDb::create().await?;
    tickets(&db.pool, "Followed", 3).await?;
    let (first, last) = (
        cursor_of(&db.pool, "ASC").await?,
        cursor_of(&db.pool, "DESC").await?,
    );
    let followed = follow_step(&db.pool, last, last, 100).await?;
    assert_eq!(
        (followed.checked, followed.behind, followed.healed),
        (6, 3, 6)
    );

    // Act: a worker that saw the relay earlier (its bound is older) steps.
    let behind = follow_step(&db.pool, first, last, 100).await?;
    // And one that finds the relay itself behind the position (a restored
    // store) checks everything again.
    let restored = follow_step(&db.pool, first, first, 100).await?;

    // Assert: the first changes nothing; the second re-reads from the
    // start, finds nothing behind, and heals nothing twice.
    assert_eq!(behind, Default::default());
    assert_eq!(
        (restored.checked, restored.behind, restored.healed),
        (1, 0, 0)
    );
    assert_eq!(db.applied_events().await?, 6);
    db.drop().await
}
