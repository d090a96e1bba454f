use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use ticketing_relay::{
    check_client_config, parse_property_file, parse_property_list, topics, KafkaProperties,
    KafkaSecurity, Relay, RelayConfig, RelayMetrics, Topics,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::database::DatabaseArg;
use super::ops_server;
use crate::shutdown::shutdown_signal;

/// How long a stopping relay may take to finish the batch it is sending.
pub(crate) const RELAY_GRACE: Duration = Duration::from_secs(10);

/// The Kafka cluster and the topics: every role that talks to Kafka
/// (`relay`, `project`, `serve`, `replay`).
#[derive(Debug, Args)]
pub(crate) struct KafkaArgs {
    /// Kafka bootstrap servers, comma-separated `host:port`.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    kafka_brokers: String,

    #[command(flatten)]
    kafka_security: KafkaSecurityArgs,

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

    /// How long the producer retries a message before the batch is re-sent.
    #[arg(long, env = "KAFKA_MESSAGE_TIMEOUT_MS", default_value_t = 30_000)]
    kafka_message_timeout_ms: u64,
}

impl KafkaArgs {
    /// The relay's settings for these brokers and topics, its own loop
    /// settings at their defaults.
    pub(crate) fn config(&self) -> RelayConfig {
        RelayConfig {
            brokers: self.kafka_brokers.clone(),
            kafka_properties: self.kafka_security.properties(),
            topics: Topics {
                tickets: self.tickets_topic.clone(),
                orders: self.orders_topic.clone(),
                payments: self.payments_topic.clone(),
            },
            partitions: self.kafka_topic_partitions,
            replication_factor: self.kafka_replication_factor,
            message_timeout: Duration::from_millis(self.kafka_message_timeout_ms.max(1)),
            ..RelayConfig::default()
        }
    }

    /// Fails, naming the property, if librdkafka rejects the Kafka
    /// settings; every role checks this before starting its clients.
    pub(crate) fn check_kafka(&self) -> anyhow::Result<()> {
        let config = self.config();
        check_client_config(&config.brokers, &config.kafka_properties)
            .context("Invalid Kafka client settings")
    }
}

/// The outbox relay's settings, shared by `relay` and `serve`.
#[derive(Debug, Args)]
pub(crate) struct RelayArgs {
    #[command(flatten)]
    kafka: KafkaArgs,

    /// Most events published in one batch.
    #[arg(long, env = "RELAY_BATCH_SIZE", default_value_t = 2_000)]
    relay_batch_size: u32,

    /// Poll period in milliseconds when the relay is idle (it does not
    /// wait while there is a backlog). Writers send no NOTIFY: that would
    /// serialize their commits.
    #[arg(long, env = "RELAY_POLL_INTERVAL_MS", default_value_t = 10)]
    relay_poll_interval_ms: u64,

    /// Seconds after which PostgreSQL drops the lock of a relay leader whose
    /// host stopped answering (no FIN, no RST), so that a standby takes
    /// over: TCP keepalives and a user timeout on the lock session.
    #[arg(long, env = "RELAY_LEADER_TIMEOUT_SECS", default_value_t = 20)]
    relay_leader_timeout_secs: u64,
}

impl RelayArgs {
    pub(crate) fn config(&self) -> RelayConfig {
        RelayConfig {
            batch_size: self.relay_batch_size.max(1),
            poll_interval: Duration::from_millis(self.relay_poll_interval_ms.max(1)),
            leader_timeout: Duration::from_secs(self.relay_leader_timeout_secs),
            ..self.kafka.config()
        }
    }
}

/// How every Kafka client (producer, consumer, admin) authenticates and
/// encrypts, and any other librdkafka property. Read once here, carried in
/// `RelayConfig::kafka_properties`, applied by `ticketing_relay::client_config`.
#[derive(Args)]
pub(crate) struct KafkaSecurityArgs {
    /// librdkafka `security.protocol`.
    #[arg(long, env = "KAFKA_SECURITY_PROTOCOL", value_parser = ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"])]
    kafka_security_protocol: Option<String>,

    /// SASL mechanism, with `sasl_plaintext` or `sasl_ssl`.
    #[arg(long, env = "KAFKA_SASL_MECHANISM", value_parser = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])]
    kafka_sasl_mechanism: Option<String>,

    /// SASL user name.
    #[arg(long, env = "KAFKA_SASL_USERNAME")]
    kafka_sasl_username: Option<String>,

    /// SASL password; give it by the environment (never shown).
    #[arg(long, env = "KAFKA_SASL_PASSWORD", hide_env_values = true)]
    kafka_sasl_password: Option<String>,

    /// PEM file of the CA the brokers' certificates are checked against;
    /// `probe` searches the system's usual CA paths.
    #[arg(long, env = "KAFKA_SSL_CA_LOCATION")]
    kafka_ssl_ca_location: Option<PathBuf>,

    /// Client certificate (PEM), for mutual TLS.
    #[arg(long, env = "KAFKA_SSL_CERTIFICATE_LOCATION")]
    kafka_ssl_certificate_location: Option<PathBuf>,

    /// Client private key (PEM), for mutual TLS.
    #[arg(long, env = "KAFKA_SSL_KEY_LOCATION")]
    kafka_ssl_key_location: Option<PathBuf>,

    /// File of librdkafka properties, one `key=value` a line, `#` comments;
    /// applied after the settings above.
    #[arg(long, env = "KAFKA_PROPERTIES_FILE", value_parser = read_property_file)]
    kafka_properties_file: Option<PropertyList>,

    /// librdkafka properties, `key=value,key=value`; applied last, so they
    /// override anything (e.g. `client.rack=eu-1a,debug=broker`).
    #[arg(long, env = "KAFKA_PROPERTIES", hide_env_values = true, value_parser = read_property_list)]
    kafka_properties: Option<PropertyList>,
}

/// Parsed `key=value` pairs. Its Debug output hides secret values.
#[derive(Clone)]
pub(crate) struct PropertyList(KafkaProperties);

impl std::fmt::Debug for PropertyList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

fn read_property_list(text: &str) -> Result<PropertyList, String> {
    parse_property_list(text)
        .map(|p| PropertyList(p.into_iter().collect()))
        .map_err(|e| e.to_string())
}

fn read_property_file(path: &str) -> Result<PropertyList, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    parse_property_file(&text)
        .map(|p| PropertyList(p.into_iter().collect()))
        .map_err(|e| format!("{path}: {e}"))
}

/// Shown as the properties they become, secret values hidden.
impl std::fmt::Debug for KafkaSecurityArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.properties().fmt(f)
    }
}

impl KafkaSecurityArgs {
    /// Security settings first, then the file, then the list.
    fn properties(&self) -> KafkaProperties {
        let mut properties = KafkaProperties::from_security(&KafkaSecurity {
            protocol: self.kafka_security_protocol.clone(),
            sasl_mechanism: self.kafka_sasl_mechanism.clone(),
            sasl_username: self.kafka_sasl_username.clone(),
            sasl_password: self.kafka_sasl_password.clone(),
            ssl_ca_location: self.kafka_ssl_ca_location.clone(),
            ssl_certificate_location: self.kafka_ssl_certificate_location.clone(),
            ssl_key_location: self.kafka_ssl_key_location.clone(),
        });
        for list in [&self.kafka_properties_file, &self.kafka_properties]
            .into_iter()
            .flatten()
        {
            properties.extend(list.0.iter().map(|(k, v)| (k.to_owned(), v.to_owned())));
        }
        properties
    }
}

impl RelayArgs {
    pub(crate) fn check_kafka(&self) -> anyhow::Result<()> {
        self.kafka.check_kafka()
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
        self.relay.check_kafka()?;
        let pool = self.database.connect(false).await?;
        let shutdown = CancellationToken::new();
        // A standby relay is ready too: it takes over when the leader dies.
        let ops = ops_server::spawn(
            self.metrics_host,
            self.metrics_port,
            pool.clone(),
            None,
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
        tracing::info!(kafka = %self.kafka.kafka_brokers, "starting the outbox relay");
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
