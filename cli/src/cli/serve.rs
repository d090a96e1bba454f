use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use ticketing_gateway::{
    Application, AuthLimits, BacklogGauge, ClientAddressSource, GatewaySettings, HttpLimits, Rate,
};
use ticketing_projections::changes::Changes;
use tokio_util::sync::CancellationToken;

use super::database::DatabaseArg;
use super::environment::{AppEnv, Insecure, DEVELOPMENT_JWT_KEY};
use super::ops_server;
use super::project::{self, ProjectionArgs};
use super::relay::{self, RelayArgs};
use super::saga::SagaArgs;
use crate::shutdown::shutdown_signal;

/// What one `serve` process runs beside the HTTP API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Role {
    /// The HTTP API (always run by `serve`).
    Gateway,
    /// The outbox relay (`ticketing relay` alone).
    Relay,
    /// The projection worker (`ticketing project` alone).
    Projections,
    /// The saga worker (`ticketing saga` alone).
    Sagas,
}

#[derive(Debug, Args)]
pub(crate) struct Arg {
    #[command(flatten)]
    database: DatabaseArg,

    /// PostgreSQL URL of a read replica of DATABASE_URL that serves the
    /// query endpoints' read-model reads (ticket and order lists and
    /// shows), with DATABASE_MAX_CONNECTIONS connections of its own; a
    /// consistency token waits until the replica shows the write. Unset:
    /// the primary. History, `asOf`, sessions and every write stay on the
    /// primary. SELECT on the views is all it needs.
    #[arg(long, env = "READ_DATABASE_URL", hide_env_values = true)]
    read_database_url: Option<String>,

    /// The roles this process runs: all of them for a local run; the
    /// gateway alone in a deployment that runs the workers as their own
    /// processes (`ticketing relay`, `project`, `saga`).
    #[arg(
        help_heading = "Roles",
        long,
        env = "SERVE_ROLES",
        value_enum,
        value_delimiter = ',',
        default_value = "gateway,relay,projections,sagas"
    )]
    roles: Vec<Role>,

    /// Address the HTTP API listens on.
    #[arg(
        help_heading = "HTTP listener",
        long,
        env = "HOST",
        default_value = "127.0.0.1"
    )]
    host: IpAddr,

    /// Port of the HTTP API.
    #[arg(
        help_heading = "HTTP listener",
        long,
        env = "PORT",
        default_value_t = 3000
    )]
    port: u16,

    /// Serve `/metrics` (with `/healthz` and `/readyz`) on this port of
    /// METRICS_HOST instead of the API port, so that what reaches the API
    /// (an ingress, the internet) cannot read the metrics.
    #[arg(help_heading = "HTTP listener", long, env = "METRICS_PORT")]
    metrics_port: Option<u16>,

    /// Address of the separate metrics port.
    #[arg(
        help_heading = "HTTP listener",
        long,
        env = "METRICS_HOST",
        default_value = "127.0.0.1"
    )]
    metrics_host: IpAddr,

    /// HS256 secret for session tokens, at least 32 bytes. The default is
    /// for local runs only (refused with APP_ENV=production).
    #[arg(
        help_heading = "Sessions",
        long,
        env = "JWT_KEY",
        default_value = DEVELOPMENT_JWT_KEY,
        hide_env_values = true
    )]
    jwt_key: String,

    /// Lifetime of a session, in seconds.
    #[arg(
        help_heading = "Sessions",
        long,
        env = "SESSION_TTL_SECONDS",
        default_value_t = 86_400
    )]
    session_ttl_seconds: u64,

    /// Mark the session cookie `Secure` (set when served over HTTPS).
    #[arg(
        help_heading = "Sessions",
        long,
        env = "SECURE_COOKIES",
        default_value_t = false
    )]
    secure_cookies: bool,

    /// How long an order holds its ticket before it expires, in seconds.
    #[arg(
        help_heading = "Requests and limits",
        long,
        env = "ORDER_EXPIRATION_SECONDS",
        default_value_t = 900
    )]
    order_expiration_seconds: u64,

    /// Largest accepted request body, in bytes.
    #[arg(help_heading = "Requests and limits", long, env = "BODY_LIMIT_BYTES", default_value_t = 64 * 1024)]
    body_limit_bytes: usize,

    /// How long a query carrying X-Consistency-Token waits for the read
    /// models to catch up, in milliseconds, before answering 503.
    #[arg(
        help_heading = "Requests and limits",
        long,
        env = "CONSISTENCY_WAIT_MS",
        default_value_t = 5_000
    )]
    consistency_wait_ms: u64,

    /// How long a client may take to send a request's headers, from their
    /// first byte, in milliseconds; then the connection is closed.
    #[arg(
        help_heading = "Requests and limits",
        long,
        env = "HTTP_HEADER_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    http_header_timeout_ms: u64,

    /// How long a connection may wait for a request (from its opening or
    /// its previous response) until that request's headers are complete, in
    /// milliseconds; then it is closed. Behind a load balancer, longer than
    /// the balancer's idle timeout.
    #[arg(
        help_heading = "Requests and limits",
        long,
        env = "HTTP_IDLE_TIMEOUT_MS",
        default_value_t = 60_000
    )]
    http_idle_timeout_ms: u64,

    /// How long a request may take from the end of its headers to its
    /// answer, the body's upload included, in milliseconds; then 408.
    #[arg(
        help_heading = "Requests and limits",
        long,
        env = "HTTP_REQUEST_TIMEOUT_MS",
        default_value_t = 30_000
    )]
    http_request_timeout_ms: u64,

    /// Connections served at once; more wait in the listen backlog.
    #[arg(
        help_heading = "Requests and limits",
        long,
        env = "HTTP_MAX_CONNECTIONS",
        default_value_t = 4_096
    )]
    http_max_connections: usize,

    /// Sign-ins and sign-ups per client address and minute (0: no limit).
    #[arg(
        help_heading = "Sign-in protection",
        long,
        env = "AUTH_ADDRESS_PER_MINUTE",
        default_value_t = 60
    )]
    auth_address_per_minute: u32,

    /// Sign-ins and sign-ups one client address may make at once.
    #[arg(
        help_heading = "Sign-in protection",
        long,
        env = "AUTH_ADDRESS_BURST",
        default_value_t = 30
    )]
    auth_address_burst: u32,

    /// Sign-ins and sign-ups per email and minute (0: no limit).
    #[arg(
        help_heading = "Sign-in protection",
        long,
        env = "AUTH_EMAIL_PER_MINUTE",
        default_value_t = 10
    )]
    auth_email_per_minute: u32,

    /// Sign-ins and sign-ups for one email at once.
    #[arg(
        help_heading = "Sign-in protection",
        long,
        env = "AUTH_EMAIL_BURST",
        default_value_t = 5
    )]
    auth_email_burst: u32,

    /// The header a trusted reverse proxy puts the client's address in
    /// (e.g. x-forwarded-for; its right-most value counts); unset, the
    /// socket's peer address counts and every such header is ignored.
    #[arg(
        help_heading = "Sign-in protection",
        long,
        env = "TRUSTED_CLIENT_IP_HEADER"
    )]
    trusted_client_ip_header: Option<String>,

    /// Password hashes run at once (0: one per core).
    #[arg(
        help_heading = "Sign-in protection",
        long,
        env = "PASSWORD_HASH_CONCURRENCY",
        default_value_t = 0
    )]
    password_hash_concurrency: usize,

    /// Password hashes waiting for a turn; more get 503 at once.
    #[arg(
        help_heading = "Sign-in protection",
        long,
        env = "PASSWORD_HASH_QUEUE",
        default_value_t = 64
    )]
    password_hash_queue: usize,

    /// Default and largest page size of the list endpoints.
    #[arg(
        help_heading = "API behaviour",
        long,
        env = "LIST_LIMIT",
        default_value_t = 1_000
    )]
    list_limit: u32,

    /// Live orders (placed, not yet paid, cancelled or expired) one user may
    /// hold; a further placement gets 400.
    #[arg(
        help_heading = "API behaviour",
        long,
        env = "MAX_LIVE_ORDERS_PER_USER",
        default_value_t = 10
    )]
    max_live_orders_per_user: u32,

    /// How long an Idempotency-Key is remembered, in hours.
    #[arg(
        help_heading = "API behaviour",
        long,
        env = "IDEMPOTENCY_RETENTION_HOURS",
        default_value_t = 24
    )]
    idempotency_retention_hours: u64,

    /// Memory for hot pages (the ticket list, tickets, each user's orders)
    /// served without a query, in bytes; 0 turns it off. Needs the
    /// projection worker in this process (it says when pages change).
    #[arg(
        help_heading = "API behaviour",
        long,
        env = "PAGE_CACHE_BYTES",
        default_value_t = 64 * 1024 * 1024
    )]
    page_cache_bytes: u64,

    /// How long a page may be served from memory at most, in milliseconds:
    /// the bound for view changes the projection worker of this process
    /// does not make (a repair or rebuild run elsewhere); its own changes
    /// drop the pages at once.
    #[arg(
        help_heading = "API behaviour",
        long,
        env = "PAGE_CACHE_MAX_AGE_MS",
        default_value_t = 1_000
    )]
    page_cache_max_age_ms: u64,

    /// Threads of the runtime the relay and the projection worker run on,
    /// apart from the HTTP connections', so that thousands of connections
    /// cannot starve the read side of CPU.
    #[arg(
        help_heading = "Pipeline in this process",
        long,
        env = "PIPELINE_THREADS",
        default_value_t = 2
    )]
    pipeline_threads: usize,

    /// Connections of the relay's and projection worker's own pool.
    #[arg(
        help_heading = "Pipeline in this process",
        long,
        env = "PIPELINE_DATABASE_CONNECTIONS",
        default_value_t = 8
    )]
    pipeline_database_connections: u32,

    /// Events committed but not yet in the read models (outbox backlog plus
    /// consumer lag) above which new writes are refused with 503 and
    /// Retry-After, so that an overload cannot grow the lag (and every
    /// read-your-writes wait) without limit; 0 never sheds.
    #[arg(
        help_heading = "Pipeline in this process",
        long,
        env = "WRITE_SHED_BACKLOG",
        default_value_t = 20_000
    )]
    write_shed_backlog: u64,

    /// The outbox relay, run alongside the gateway (KAFKA_BROKERS, …).
    #[command(flatten, next_help_heading = "Relay (SERVE_ROLES has relay)")]
    relay: RelayArgs,

    /// The projection worker, run alongside (PROJECTION_GROUP_ID, …).
    #[command(
        flatten,
        next_help_heading = "Projections (SERVE_ROLES has projections)"
    )]
    projection: ProjectionArgs,

    /// The saga worker and payment provider, run alongside (STRIPE_*, …).
    #[command(flatten, next_help_heading = "Sagas and payments")]
    saga: SagaArgs,
}

impl Arg {
    pub(crate) async fn main(self, env: AppEnv) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.roles.contains(&Role::Gateway),
            "SERVE_ROLES must include gateway: serve runs the HTTP API; run a worker alone with \
             `ticketing relay`, `ticketing project` or `ticketing saga`"
        );
        let runs = |role| self.roles.contains(&role);
        let mut insecure = Insecure::default();
        let _ = insecure.jwt_key(&self.jwt_key).check(
            !self.secure_cookies,
            "SECURE_COOKIES is off: session cookies would also travel over plain HTTP",
        );
        self.saga.check(&mut insecure);
        insecure.enforce(env)?;
        let http_limits = HttpLimits {
            header_timeout: Duration::from_millis(self.http_header_timeout_ms),
            idle_timeout: Duration::from_millis(self.http_idle_timeout_ms),
            request_timeout: Duration::from_millis(self.http_request_timeout_ms),
            max_connections: self.http_max_connections,
        };
        let auth_limits = self.auth_limits()?;
        let pool = self.database.connect(true).await?;
        // An empty variable (a template's blank) means none, like unset.
        let read_pool = match self.read_database_url.as_deref().map(str::trim) {
            Some(url) if !url.is_empty() => Some(
                self.database
                    .connect_read_replica(url)
                    .await
                    .context("READ_DATABASE_URL")?,
            ),
            _ => None,
        };
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
            max_live_orders: self.max_live_orders_per_user,
            idempotency_retention: Duration::from_secs(self.idempotency_retention_hours * 3_600),
            page_cache_bytes: self.page_cache_bytes,
            page_cache_max_age: Duration::from_millis(self.page_cache_max_age_ms),
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
        // One token stops every role: the gateway drains its requests while
        // the relay finishes the batch it is sending.
        let shutdown = CancellationToken::new();
        // The relay and the projection worker get a runtime, and a pool, of
        // their own: on the gateway's runtime their tasks would queue behind
        // every HTTP connection's, and the read side would fall behind
        // under exactly the load it must keep up with.
        let pipeline = PipelineRuntime::start(self.pipeline_threads)?;
        let pipeline_pool = {
            let connections = self.pipeline_database_connections.max(2);
            let database = self.database.clone();
            pipeline
                .handle
                .spawn(async move { database.connect_with(connections).await })
                .await
                .context("The pipeline pool task failed")??
        };
        let projector = if runs(Role::Projections) {
            let _pipeline = pipeline.handle.enter();
            Some(self.projection.spawn(
                pipeline_pool.clone(),
                &self.relay.config(),
                shutdown.clone(),
            )?)
        } else {
            None
        };
        let relay = runs(Role::Relay).then(|| {
            let _pipeline = pipeline.handle.enter();
            self.relay.spawn(pipeline_pool, shutdown.clone())
        });
        let mut app = app
            .with_http_limits(http_limits)
            .with_auth_limits(auth_limits);
        if let Some(replica) = &read_pool {
            app = app.with_read_pool(replica.clone());
        }
        let mut readiness = Vec::new();
        if let Some(projector) = &projector {
            readiness.push(("projections", projector.readiness.clone()));
            app = app.with_readiness_check("projections", projector.readiness.clone());
        }
        if self.page_cache_bytes > 0 && self.page_cache_max_age_ms > 0 {
            // The page cache's generation: the changes every projection
            // worker announces, and this process's own commits at once.
            match Changes::listen(&pool, shutdown.clone()).await {
                Ok((announced, _listening)) => {
                    let local = projector.as_ref().map(|p| Arc::clone(&p.metrics));
                    app = app.with_read_generation(Arc::new(move || {
                        let own = local.as_ref().map_or(0, |metrics| metrics.views_changed());
                        announced.generation().wrapping_add(own)
                    }));
                }
                // E.g. a pooler in transaction mode, where LISTEN cannot
                // work: serve every read from the database instead.
                Err(error) => tracing::warn!(
                    error.message = %error,
                    "the page cache is off: cannot LISTEN for read-model changes"
                ),
            }
        }
        // Shedding reads the backlog and lag of the relay and projector in
        // this process; a gateway alone leaves it to the workers' alerts.
        if let (Some(projector), Some((_, relay_metrics))) = (&projector, &relay) {
            let projection_metrics = Arc::clone(&projector.metrics);
            let relay_metrics = Arc::clone(relay_metrics);
            let behind: BacklogGauge = Arc::new(move || {
                let lag = u64::try_from(projection_metrics.total_lag()).unwrap_or_default();
                relay_metrics.backlog().saturating_add(lag)
            });
            app = app.with_write_shedding(self.write_shed_backlog, behind);
        } else if self.write_shed_backlog > 0 {
            tracing::info!(
                "write shedding is off: it needs the relay and the projections in this process"
            );
        }
        let (app, ops) = match self.metrics_port {
            None => (app.with_metrics(crate::telemetry::metrics_render()), None),
            Some(port) => {
                let ops = ops_server::spawn(
                    self.metrics_host,
                    port,
                    pool.clone(),
                    read_pool,
                    readiness,
                    shutdown.clone(),
                )
                .await?;
                (app, Some(ops))
            }
        };
        let saga = runs(Role::Sagas).then(|| self.saga.spawn(pool, &sagas, shutdown.clone()));
        let _signal = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                shutdown_signal().await;
                shutdown.cancel();
            }
        });
        tracing::info!(port = app.port(), roles = ?self.roles, "ticketing is serving");
        let served = app
            .run_until_stopped(shutdown.clone().cancelled_owned())
            .await;
        shutdown.cancel();
        let relay_stopped = match relay {
            Some((relay, _)) => relay::stop(relay).await,
            None => Ok(()),
        };
        if let Some(saga) = saga {
            saga.await.context("saga worker panicked")?;
        }
        if let Some(projector) = projector {
            project::stop(projector.task).await?;
        }
        relay_stopped?;
        served.context("HTTP server failed")?;
        if let Some(ops) = ops {
            let _ = ops.await;
        }
        tracing::info!("drained, exiting");
        Ok(())
    }
}

impl Arg {
    fn auth_limits(&self) -> anyhow::Result<AuthLimits> {
        let trusted_header = self
            .trusted_client_ip_header
            .as_deref()
            .filter(|name| !name.trim().is_empty())
            .map(|name| name.trim().parse())
            .transpose()
            .context("TRUSTED_CLIENT_IP_HEADER is not a header name")?;
        Ok(AuthLimits {
            per_address: Rate {
                per_minute: self.auth_address_per_minute,
                burst: self.auth_address_burst,
            },
            per_email: Rate {
                per_minute: self.auth_email_per_minute,
                burst: self.auth_email_burst,
            },
            client_address: ClientAddressSource { trusted_header },
            hashing_concurrency: self.password_hash_concurrency,
            hashing_queue: self.password_hash_queue,
        })
    }
}

/// The pipeline's runtime. Dropping a runtime blocks until its tasks end,
/// which would panic in an async context; this one is shut down in the
/// background instead (its tasks have been stopped by then, or are aborted).
struct PipelineRuntime {
    handle: tokio::runtime::Handle,
    runtime: Option<tokio::runtime::Runtime>,
}

impl PipelineRuntime {
    fn start(threads: usize) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("pipeline")
            .enable_all()
            .build()
            .context("Failed to start the pipeline runtime")?;
        Ok(Self {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }
}

impl Drop for PipelineRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clap::Parser;

    use super::super::{Cli, Command};
    use super::*;

    fn serve(args: &[&str]) -> (AppEnv, Box<Arg>) {
        let cli = Cli::try_parse_from(args).unwrap();
        match cli.command {
            Command::Serve(arg) => (cli.app_env, arg),
            _ => panic!("not serve"),
        }
    }

    #[test]
    fn the_read_replica_is_parsed_and_does_not_change_the_environment() {
        let url = "postgres://reader@replica:5432/ticketing?application_name=ticketing-read";
        let (env, arg) = serve(&[
            "ticketing",
            "--app-env",
            "production",
            "serve",
            "--read-database-url",
            url,
        ]);
        assert_eq!(env, AppEnv::Production);
        assert_eq!(arg.read_database_url.as_deref(), Some(url));

        // After the subcommand too (a global flag), and without a replica.
        let (env, arg) = serve(&["ticketing", "serve", "--app-env", "production"]);
        assert_eq!(env, AppEnv::Production);
        if std::env::var_os("READ_DATABASE_URL").is_none() {
            assert_eq!(arg.read_database_url, None);
        }
    }
}
