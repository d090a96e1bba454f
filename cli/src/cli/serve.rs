use std::net::IpAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use ticketing_gateway::{Application, GatewaySettings};
use tokio_util::sync::CancellationToken;

use super::database::DatabaseArg;
use super::project::{self, ProjectionArgs};
use super::relay::{self, RelayArgs};
use super::saga::SagaArgs;
use crate::shutdown::shutdown_signal;

#[derive(Debug, Args)]
pub(crate) struct Arg {
    #[command(flatten)]
    database: DatabaseArg,

    /// Address the HTTP API listens on.
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    host: IpAddr,

    /// Port of the HTTP API.
    #[arg(long, env = "PORT", default_value_t = 3000)]
    port: u16,

    /// HS256 secret for session tokens. The default is for local runs only.
    #[arg(
        long,
        env = "JWT_KEY",
        default_value = "local-development-only-jwt-key",
        hide_env_values = true
    )]
    jwt_key: String,

    /// Lifetime of a session, in seconds.
    #[arg(long, env = "SESSION_TTL_SECONDS", default_value_t = 86_400)]
    session_ttl_seconds: u64,

    /// Mark the session cookie `Secure` (set when served over HTTPS).
    #[arg(long, env = "SECURE_COOKIES", default_value_t = false)]
    secure_cookies: bool,

    /// How long an order holds its ticket before it expires, in seconds.
    #[arg(long, env = "ORDER_EXPIRATION_SECONDS", default_value_t = 900)]
    order_expiration_seconds: u64,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "BODY_LIMIT_BYTES", default_value_t = 64 * 1024)]
    body_limit_bytes: usize,

    /// How long a query carrying X-Consistency-Token waits for the read
    /// models to catch up, in milliseconds, before answering 503.
    #[arg(long, env = "CONSISTENCY_WAIT_MS", default_value_t = 5_000)]
    consistency_wait_ms: u64,

    /// Default and largest page size of the list endpoints.
    #[arg(long, env = "LIST_LIMIT", default_value_t = 1_000)]
    list_limit: u32,

    /// The outbox relay, run alongside the gateway (KAFKA_BROKERS, …).
    #[command(flatten)]
    relay: RelayArgs,

    /// The projection worker, run alongside (PROJECTION_GROUP_ID, …).
    #[command(flatten)]
    projection: ProjectionArgs,

    /// The saga worker and payment provider, run alongside (STRIPE_*, …).
    #[command(flatten)]
    saga: SagaArgs,
}

impl Arg {
    pub(crate) async fn main(self) -> anyhow::Result<()> {
        let pool = self.database.connect_and_migrate().await?;
        let settings = GatewaySettings {
            host: self.host,
            port: self.port,
            jwt_key: self.jwt_key,
            session_ttl: Duration::from_secs(self.session_ttl_seconds),
            secure_cookies: self.secure_cookies,
            order_expiration: Duration::from_secs(self.order_expiration_seconds),
            body_limit_bytes: self.body_limit_bytes,
            consistency_wait: Duration::from_millis(self.consistency_wait_ms),
            list_limit: self.list_limit,
        };
        let sagas = self.saga.wire(&pool)?;
        let app = Application::build_with(
            settings,
            pool.clone(),
            sagas.commands.clone(),
            sagas.payments.clone(),
        )
        .await
        .context("Failed to bind the HTTP listener")?;
        // One token stops both roles: the gateway drains its requests while
        // the relay finishes the batch it is sending.
        let shutdown = CancellationToken::new();
        let (projector, projection_ready) =
            self.projection
                .spawn(pool.clone(), &self.relay.config(), shutdown.clone())?;
        let app = app
            .with_readiness_check("projections", projection_ready)
            .with_metrics(crate::telemetry::metrics_render());
        let saga = self.saga.spawn(pool.clone(), &sagas, shutdown.clone());
        let relay = self.relay.spawn(pool, shutdown.clone());
        let _signal = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                shutdown_signal().await;
                shutdown.cancel();
            }
        });
        tracing::info!(port = app.port(), "ticketing is serving");
        let served = app
            .run_until_stopped(shutdown.clone().cancelled_owned())
            .await;
        shutdown.cancel();
        let relay_stopped = relay::stop(relay).await;
        saga.await.context("saga worker panicked")?;
        project::stop(projector).await?;
        relay_stopped?;
        served.context("HTTP server failed")?;
        tracing::info!("drained, exiting");
        Ok(())
    }
}
