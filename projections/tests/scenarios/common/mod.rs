//! Shared set-up: a fresh database per test, unique topics and group ids,
//! a real producer writing envelopes, and in-process projection workers.

mod produce;

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use ticketing_eventstore::ScratchDatabase;
use ticketing_projections::{
    AggregateKind, ProjectedEvent, ProjectionConfig, ProjectionError, ProjectionMetrics, Projector,
};
use ticketing_relay::Topics;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub(crate) use produce::{order_placed, produce, ticket, Producer};
pub(crate) use ticketing_testkit::{brokers, eventually};

pub(crate) type TestResult = anyhow::Result<()>;

/// A database of its own, migrated, dropped by [`TestDb::drop`].
pub(crate) struct TestDb {
    pub(crate) pool: PgPool,
    scratch: ScratchDatabase,
}

impl TestDb {
    pub(crate) async fn create() -> anyhow::Result<TestDb> {
        ticketing_testkit::init_test_logs("info,sqlx=warn");
        let scratch = ScratchDatabase::create("projections", 20).await?;
        Ok(TestDb {
            pool: scratch.pool().clone(),
            scratch,
        })
    }

    /// Removes the database; a failed test leaves it behind for inspection.
    pub(crate) async fn drop(self) -> TestResult {
        Ok(self.scratch.remove().await?)
    }

    /// Every read model, row by row, without `updated_at` (the only column
    /// allowed to differ between two projections of the same events).
    pub(crate) async fn read_models(&self) -> anyhow::Result<Vec<String>> {
        let mut rows = Vec::new();
        for table in ["ticket_views", "order_views", "payment_views"] {
            let sql = format!(
                "SELECT '{table} ' || (to_jsonb(t) - 'updated_at')::text FROM {table} t ORDER BY id"
            );
            rows.extend(
                sqlx::query_scalar::<_, String>(&sql)
                    .fetch_all(&self.pool)
                    .await?,
            );
        }
        Ok(rows)
    }

    /// Sum of the checkpoints over every view: the number of events applied
    /// once each.
    pub(crate) async fn applied_events(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT ((SELECT coalesce(sum(last_sequence), 0) FROM ticket_views) \
                  + (SELECT coalesce(sum(last_sequence), 0) FROM order_views) \
                  + (SELECT coalesce(sum(last_sequence), 0) FROM payment_views))::bigint",
        )
        .fetch_one(&self.pool)
        .await?)
    }
}

/// Topics and a group no other test uses.
pub(crate) fn config() -> ProjectionConfig {
    let suffix = Uuid::new_v4().simple().to_string();
    ProjectionConfig {
        brokers: brokers(),
        topics: Topics {
            tickets: format!("test.tickets.{suffix}"),
            orders: format!("test.orders.{suffix}"),
            payments: format!("test.payments.{suffix}"),
        },
        group_id: format!("test-projections-{suffix}"),
        partitions: 4,
        max_retries: 2,
        retry_base: Duration::from_millis(10),
        statistics_interval: Duration::from_millis(200),
        ..ProjectionConfig::default()
    }
}

/// A worker running in this process.
pub(crate) struct RunningProjector {
    pub(crate) metrics: Arc<ProjectionMetrics>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), ProjectionError>>,
}

impl RunningProjector {
    pub(crate) fn spawn(pool: &PgPool, config: &ProjectionConfig) -> anyhow::Result<Self> {
        let projector = Projector::new(pool.clone(), config.clone())?;
        let metrics = projector.metrics();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(projector.run_until_stopped(shutdown.clone()));
        Ok(RunningProjector {
            metrics,
            shutdown,
            task,
        })
    }

    /// Waits until the worker has joined its group and been assigned
    /// partitions, so that what is produced next is consumed at once.
    pub(crate) async fn joined(&self) -> TestResult {
        eventually(Duration::from_secs(30), || async {
            Ok(!self.metrics.snapshot().partitions.is_empty())
        })
        .await
    }

    pub(crate) async fn stop(self) -> TestResult {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.task).await???;
        Ok(())
    }
}

/// A transaction holding `ticket_views` against every other session, so
/// that a step under test stops at its first read of the view.
pub(crate) async fn hold_ticket_views(
    pool: &PgPool,
) -> anyhow::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
    let mut tx = pool.begin().await?;
    let _ = sqlx::query("LOCK TABLE ticket_views IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// The backend of this database waiting for a lock of the kind
/// `wait_event` (`relation`: on a table; `transactionid`: on another
/// transaction's row).
pub(crate) async fn wait_for_lock_waiter(
    conn: &mut sqlx::PgConnection,
    wait_event: &str,
) -> anyhow::Result<i32> {
    for _ in 0..500 {
        let waiting: Option<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND wait_event = $1",
        )
        .bind(wait_event)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(pid) = waiting {
            return Ok(pid);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    anyhow::bail!("no session came to wait for a lock ({wait_event})")
}

/// The creation of ticket `t-{n:06}`, as the projector decodes it.
pub(crate) fn created(n: usize) -> anyhow::Result<ProjectedEvent> {
    let envelope = produce(
        &format!("t-{n:06}"),
        1,
        u64::try_from(n)?,
        ticket("Opera", 2500, "seller"),
    );
    Ok(ProjectedEvent::decode(
        AggregateKind::Ticket,
        &serde_json::to_vec(&envelope)?,
    )?)
}
