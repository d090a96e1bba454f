use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use ticketing_projections::reconcile::follow::FollowConfig;
use ticketing_projections::reconcile::sweep::SweepConfig;
use ticketing_projections::{ProjectionConfig, ProjectionError, ProjectionMetrics, Projector};
use ticketing_relay::RelayConfig;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::database::DatabaseArg;
use super::ops_server;
use super::relay::RelayArgs;
use crate::shutdown::shutdown_signal;

/// How long a stopping worker may take to finish its batch and commit.
const PROJECTION_GRACE: Duration = Duration::from_secs(10);

/// `/readyz` condition of a projection worker.
pub(crate) type ReadinessCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The projection worker's own settings, shared by `project` and `serve`;
/// brokers and topics are the relay's (KAFKA_BROKERS, TICKETS_TOPIC, …).
#[derive(Debug, Args)]
pub(crate) struct ProjectionArgs {
    /// Consumer group; workers sharing it share the partitions.
    #[arg(
        long,
        env = "PROJECTION_GROUP_ID",
        default_value = "ticketing-projections"
    )]
    projection_group_id: String,

    /// Consumer session timeout in milliseconds; joining a group takes about
    /// half of it on the local broker.
    #[arg(long, env = "KAFKA_SESSION_TIMEOUT_MS", default_value_t = 6_000)]
    kafka_session_timeout_ms: u64,

    /// Consumer heartbeat interval in milliseconds.
    #[arg(long, env = "KAFKA_HEARTBEAT_INTERVAL_MS", default_value_t = 300)]
    kafka_heartbeat_interval_ms: u64,

    /// Retries of an event that fails to apply before it is dead-lettered.
    #[arg(long, env = "PROJECTION_MAX_RETRIES", default_value_t = 5)]
    projection_max_retries: u32,

    /// First retry delay in milliseconds, doubled on each retry.
    #[arg(long, env = "PROJECTION_RETRY_BASE_MS", default_value_t = 50)]
    projection_retry_base_ms: u64,

    /// Most already-fetched messages projected in one step.
    #[arg(long, env = "PROJECTION_BATCH_SIZE", default_value_t = 1_500)]
    projection_batch_size: usize,

    /// Lanes a step is split into by partition, applied concurrently, each
    /// in its own transaction on its own connection.
    #[arg(long, env = "PROJECTION_CONCURRENCY", default_value_t = 3)]
    projection_concurrency: usize,

    /// Lag (messages, worst partition) above which `/readyz` says not ready.
    #[arg(long, env = "PROJECTION_READY_MAX_LAG", default_value_t = 1_000)]
    projection_ready_max_lag: i64,

    /// Milliseconds after the relay published an event by which the views
    /// must have it; past it, a missing event is healed from the event
    /// store (the broker lost it). Healing takes about this plus a second.
    #[arg(long, env = "PROJECTION_FOLLOW_GRACE_MS", default_value_t = 5_000)]
    projection_follow_grace_ms: u64,

    /// Most events the read side compares with the event store per step.
    #[arg(long, env = "PROJECTION_FOLLOW_BATCH", default_value_t = 5_000)]
    projection_follow_batch: i64,

    /// Milliseconds between two ranges of the anti-entropy sweep; 0 turns
    /// it off.
    #[arg(long, env = "PROJECTION_SWEEP_INTERVAL_MS", default_value_t = 2_000)]
    projection_sweep_interval_ms: u64,

    /// Aggregates compared per range of the anti-entropy sweep.
    #[arg(long, env = "PROJECTION_SWEEP_BATCH", default_value_t = 1_000)]
    projection_sweep_batch: i64,

    /// Consumer lag (messages, all partitions) above which the sweep's next
    /// range waits, so that it does not compete with a spike.
    #[arg(long, env = "PROJECTION_SWEEP_YIELD_LAG", default_value_t = 100)]
    projection_sweep_yield_lag: i64,

    /// Longest a range of the sweep waits for the lag to fall.
    #[arg(long, env = "PROJECTION_SWEEP_MAX_DEFER_MS", default_value_t = 30_000)]
    projection_sweep_max_defer_ms: u64,
}

impl ProjectionArgs {
    pub(crate) fn config(&self, relay: &RelayConfig) -> ProjectionConfig {
        ProjectionConfig {
            brokers: relay.brokers.clone(),
            kafka_properties: relay.kafka_properties.clone(),
            topics: relay.topics.clone(),
            group_id: self.projection_group_id.clone(),
            partitions: relay.partitions,
            replication_factor: relay.replication_factor,
            session_timeout: Duration::from_millis(self.kafka_session_timeout_ms),
            heartbeat_interval: Duration::from_millis(self.kafka_heartbeat_interval_ms),
            max_batch: self.projection_batch_size.max(1),
            concurrency: self.projection_concurrency.max(1),
            max_retries: self.projection_max_retries,
            retry_base: Duration::from_millis(self.projection_retry_base_ms),
            ready_max_lag: self.projection_ready_max_lag,
            follow: FollowConfig {
                grace: Duration::from_millis(self.projection_follow_grace_ms),
                batch: self.projection_follow_batch.max(1),
                ..FollowConfig::default()
            },
            sweep: SweepConfig {
                interval: Duration::from_millis(self.projection_sweep_interval_ms),
                batch: self.projection_sweep_batch.max(1),
                yield_lag: self.projection_sweep_yield_lag,
                max_defer: Duration::from_millis(self.projection_sweep_max_defer_ms),
            },
            ..ProjectionConfig::default()
        }
    }

    /// Starts a worker in the background; it runs until `shutdown`.
    pub(crate) fn spawn(
        &self,
        pool: sqlx::PgPool,
        relay: &RelayConfig,
        shutdown: CancellationToken,
    ) -> anyhow::Result<SpawnedProjector> {
        let projector = Projector::new(pool, self.config(relay))
            .context("Failed to create the projection worker")?;
        let readiness = Arc::new(projector.readiness_check());
        let metrics = projector.metrics();
        tracing::info!(group = %self.projection_group_id, "starting the projection worker");
        Ok(SpawnedProjector {
            task: tokio::spawn(projector.run_until_stopped(shutdown)),
            readiness,
            metrics,
        })
    }
}

/// A projection worker running in the background.
pub(crate) struct SpawnedProjector {
    pub(crate) task: JoinHandle<Result<(), ProjectionError>>,
    /// For `/readyz`.
    pub(crate) readiness: ReadinessCheck,
    pub(crate) metrics: Arc<ProjectionMetrics>,
}

#[derive(Debug, Args)]
pub(crate) struct Arg {
    #[command(flatten)]
    database: DatabaseArg,

    #[command(flatten)]
    relay: RelayArgs,

    #[command(flatten)]
    projection: ProjectionArgs,

    /// Address of the `/healthz`, `/readyz` and `/metrics` endpoints.
    #[arg(long, env = "METRICS_HOST", default_value = "127.0.0.1")]
    metrics_host: IpAddr,

    /// Port of the `/healthz`, `/readyz` and `/metrics` endpoints.
    #[arg(long, env = "METRICS_PORT", default_value_t = 9102)]
    metrics_port: u16,
}

impl Arg {
    pub(crate) async fn main(self) -> anyhow::Result<()> {
        self.relay.check_kafka()?;
        let pool = self.database.connect(false).await?;
        let shutdown = CancellationToken::new();
        let SpawnedProjector {
            task: worker,
            readiness,
            ..
        } = self
            .projection
            .spawn(pool.clone(), &self.relay.config(), shutdown.clone())?;
        let ops = ops_server::spawn(
            self.metrics_host,
            self.metrics_port,
            pool,
            None,
            vec![("projections", readiness)],
            shutdown.clone(),
        )
        .await?;
        shutdown_signal().await;
        shutdown.cancel();
        let stopped = stop(worker).await;
        let _ = ops.await;
        stopped
    }
}

/// Waits for a cancelled worker to finish its batch and commit its offsets,
/// at most [`PROJECTION_GRACE`]. A batch cut short is not lost: its offsets
/// were not committed, so the partition's next owner projects it again.
pub(crate) async fn stop(
    mut worker: JoinHandle<Result<(), ProjectionError>>,
) -> anyhow::Result<()> {
    match tokio::time::timeout(PROJECTION_GRACE, &mut worker).await {
        Ok(joined) => joined
            .context("The projection task failed")?
            .context("The projection worker failed"),
        Err(_) => {
            tracing::warn!("the projection worker did not stop in time; aborting it");
            worker.abort();
            Ok(())
        }
    }
}
