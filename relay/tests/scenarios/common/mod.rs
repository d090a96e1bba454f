//! Shared set-up: a fresh database per test, unique topics, an in-process
//! relay, command load, and a real rdkafka consumer reading everything back.

mod consume;
pub(crate) mod load;
mod netfault;

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use ticketing_eventstore::ScratchDatabase;
use ticketing_relay::{Relay, RelayConfig, RelayMetrics, Topics};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub(crate) use consume::{assert_consumer_view, read_all};
pub(crate) use netfault::Blackhole;
pub(crate) use ticketing_testkit::{brokers as shared_brokers, eventually, OwnedBroker};

pub(crate) type TestResult = anyhow::Result<()>;

/// A database of its own, migrated, dropped by [`TestDb::drop`].
pub(crate) struct TestDb {
    pub(crate) pool: PgPool,
    pub(crate) url: String,
    scratch: ScratchDatabase,
}

impl TestDb {
    pub(crate) async fn create() -> anyhow::Result<TestDb> {
        ticketing_testkit::init_test_logs("info,sqlx=warn");
        let scratch = ScratchDatabase::create("relay", 40).await?;
        Ok(TestDb {
            pool: scratch.pool().clone(),
            url: scratch.url().to_owned(),
            scratch,
        })
    }

    /// Removes the database; a failed test leaves it behind for inspection.
    pub(crate) async fn drop(self) -> TestResult {
        Ok(self.scratch.remove().await?)
    }

    /// Every stored event as (event id, aggregate id, sequence).
    pub(crate) async fn events(&self) -> anyhow::Result<Vec<(Uuid, String, i64)>> {
        Ok(
            sqlx::query_as("SELECT event_id, aggregate_id, sequence FROM events")
                .fetch_all(&self.pool)
                .await?,
        )
    }
}

/// Events not yet behind the relay cursor (all of them before it exists).
const AFTER_CURSOR: &str = "FROM events WHERE NOT EXISTS (SELECT 1 FROM relay_cursor c \
     WHERE c.name = 'kafka' AND (c.transaction_id, c.global_position) >= (events.transaction_id, events.global_position))";

impl TestDb {
    pub(crate) async fn pending(&self) -> anyhow::Result<i64> {
        Ok(
            sqlx::query_scalar(&format!("SELECT count(*) {AFTER_CURSOR}"))
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// The events the relay has not yet recorded as acknowledged.
    pub(crate) async fn events_after_cursor(&self) -> anyhow::Result<Vec<(Uuid, String, i64)>> {
        Ok(sqlx::query_as(&format!(
            "SELECT event_id, aggregate_id, sequence {AFTER_CURSOR}"
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Waits until the relay cursor is past every committed event.
    pub(crate) async fn drained(&self, limit: Duration) -> TestResult {
        eventually(limit, || async { Ok(self.pending().await? == 0) }).await
    }
}

/// Topics no other test uses, on `brokers`.
pub(crate) fn relay_config(brokers: &str) -> RelayConfig {
    let suffix = Uuid::new_v4().simple().to_string();
    RelayConfig {
        brokers: brokers.to_owned(),
        topics: Topics {
            tickets: format!("test.tickets.{suffix}"),
            orders: format!("test.orders.{suffix}"),
            payments: format!("test.payments.{suffix}"),
        },
        partitions: 3,
        poll_interval: Duration::from_millis(200),
        lock_retry_interval: Duration::from_millis(200),
        leader_timeout: Duration::from_secs(4),
        ..RelayConfig::default()
    }
}

/// A relay running in this process; stopping it is graceful, aborting it
/// is a crash as far as PostgreSQL and the broker can tell.
pub(crate) struct RunningRelay {
    pub(crate) metrics: Arc<RelayMetrics>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl RunningRelay {
    pub(crate) fn spawn(pool: &PgPool, config: &RelayConfig) -> RunningRelay {
        let relay = Relay::new(pool.clone(), config.clone());
        let metrics = relay.metrics();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(relay.run_until_stopped(shutdown.clone()));
        RunningRelay {
            metrics,
            shutdown,
            task,
        }
    }

    pub(crate) async fn stop(self) -> TestResult {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(40), self.task).await??;
        Ok(())
    }

    /// Drops the task wherever it is, and with it the lock connection.
    pub(crate) async fn abort(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}
