use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use ticketing_relay::{topics, Relay, RelayConfig, RelayMetrics, Topics};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::database::DatabaseArg;
use super::ops_server;
use crate::shutdown::shutdown_signal;

/// How long a stopping relay may take to finish the batch it is sending.
pub(crate) const RELAY_GRACE: Duration = Duration::from_secs(10);

/// The outbox relay's settings, shared by `relay` and `serve`.
#[derive(Debug, Args)]
pub(crate) struct RelayArgs {
    /// Kafka bootstrap servers, comma-separated `host:port`.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    kafka_brokers: String,

    /// Topic of ticket events.
    #[arg(long, env = "TICKETS_TOPIC", default_value = topics::TICKETS)]
    tickets_topic: String,

    /// Topic of order events.
    #[arg(long, env = "ORDERS_TOPIC", default_value = topics::ORDERS)]
    orders_topic: String,

    /// Topic of payment events.
    #[arg(long, env = "PAYMENTS_TOPIC", default_value = topics::PAYMENTS)]
    payments_topic: String,

    /// Partitions of each topic the relay creates at start-up.
    #[arg(long, env = "KAFKA_TOPIC_PARTITIONS", default_value_t = 6)]
    kafka_topic_partitions: i32,

    /// Replication factor of each topic the relay creates at start-up.
    #[arg(long, env = "KAFKA_REPLICATION_FACTOR", default_value_t = 1)]
    kafka_replication_factor: i32,

    /// Most events published in one batch.
    #[arg(long, env = "RELAY_BATCH_SIZE", default_value_t = 2_000)]
    relay_batch_size: u32,

    /// Poll period in milliseconds when the relay is idle (it does not
    /// wait while there is a backlog). Writers send no NOTIFY: that would
    /// serialize their commits.
    #[arg(long, env = "RELAY_POLL_INTERVAL_MS", default_value_t = 10)]
    relay_poll_interval_ms: u64,

    /// How long the producer retries a message before the batch is re-sent.
    #[arg(long, env = "KAFKA_MESSAGE_TIMEOUT_MS", default_value_t = 30_000)]
    kafka_message_timeout_ms: u64,

    /// Seconds after which PostgreSQL drops the lock of a relay leader whose
    /// host stopped answering (no FIN, no RST), so that a standby takes
    /// over: TCP keepalives and a user timeout on the lock session.
    #[arg(long, env = "RELAY_LEADER_TIMEOUT_SECS", default_value_t = 20)]
    relay_leader_timeout_secs: u64,
}

impl RelayArgs {
    pub(crate) fn config(&self) -> RelayConfig {
        RelayConfig {
            brokers: self.kafka_brokers.clone(),
            topics: Topics {
                tickets: self.tickets_topic.clone(),
                orders: self.orders_topic.clone(),
                payments: self.payments_topic.clone(),
            },
            partitions: self.kafka_topic_partitions,
            replication_factor: self.kafka_replication_factor,
            batch_size: self.relay_batch_size.max(1),
            poll_interval: Duration::from_millis(self.relay_poll_interval_ms.max(1)),
            message_timeout: Duration::from_millis(self.kafka_message_timeout_ms.max(1)),
            leader_timeout: Duration::from_secs(self.relay_leader_timeout_secs),
            ..RelayConfig::default()
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct Arg {
    #[command(flatten)]
    database: DatabaseArg,

    #[command(flatten)]
    relay: RelayArgs,

    /// Address of the `/healthz`, `/readyz` and `/metrics` endpoints.
    #[arg(long, env = "METRICS_HOST", default_value = "127.0.0.1")]
    metrics_host: IpAddr,

    /// Port of the `/healthz`, `/readyz` and `/metrics` endpoints.
    #[arg(long, env = "METRICS_PORT", default_value_t = 9101)]
    metrics_port: u16,
}

impl Arg {
    pub(crate) async fn main(self) -> anyhow::Result<()> {
        let pool = self.database.connect(false).await?;
        let shutdown = CancellationToken::new();
        // A standby relay is ready too: it takes over when the leader dies.
        let ops = ops_server::spawn(
            self.metrics_host,
            self.metrics_port,
            pool.clone(),
            Vec::new(),
            shutdown.clone(),
        )
        .await?;
        let (relay, _) = self.relay.spawn(pool, shutdown.clone());
        shutdown_signal().await;
        shutdown.cancel();
        let stopped = stop(relay).await;
        let _ = ops.await;
        stopped
    }
}

impl RelayArgs {
    /// Starts the relay in the background; it runs until `shutdown`.
    pub(crate) fn spawn(
        &self,
        pool: sqlx::PgPool,
        shutdown: CancellationToken,
    ) -> (JoinHandle<()>, Arc<RelayMetrics>) {
        tracing::info!(kafka = %self.kafka_brokers, "starting the outbox relay");
        let relay = Relay::new(pool, self.config());
        let metrics = relay.metrics();
        (tokio::spawn(relay.run_until_stopped(shutdown)), metrics)
    }
}

/// Waits for a cancelled relay to finish its batch, at most [`RELAY_GRACE`].
/// A batch cut short is not lost: its cursor was not saved, so the next
/// relay re-sends it.
pub(crate) async fn stop(mut relay: JoinHandle<()>) -> anyhow::Result<()> {
    match tokio::time::timeout(RELAY_GRACE, &mut relay).await {
        Ok(joined) => joined.context("The relay task failed"),
        Err(_) => {
            tracing::warn!("the relay did not stop in time; aborting its batch");
            relay.abort();
            Ok(())
        }
    }
}
