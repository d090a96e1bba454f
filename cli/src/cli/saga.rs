use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use sqlx::PgPool;
use ticketing_eventstore::GroupCommit;
use ticketing_sagas::{
    BreakerSettings, Commands, PaymentService, PaymentSettings, SagaConfig, SagaWorker,
    DEFAULT_MAX_PAYMENT_ATTEMPTS,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::database::DatabaseArg;
use super::environment::{AppEnv, Insecure};
use super::ops_server;
use crate::shutdown::shutdown_signal;

/// `ticketing saga`: fire due saga timers (order expiry, ticket release,
/// reservation repair, payment recovery). Any number may run.
#[derive(Debug, Args)]
pub(crate) struct Arg {
    #[command(flatten)]
    database: DatabaseArg,

    #[command(flatten)]
    saga: SagaArgs,

    /// Address of the `/healthz`, `/readyz` and `/metrics` endpoints.
    #[arg(long, env = "METRICS_HOST", default_value = "127.0.0.1")]
    metrics_host: IpAddr,

    /// Port of the `/healthz`, `/readyz` and `/metrics` endpoints.
    #[arg(long, env = "METRICS_PORT", default_value_t = 9103)]
    metrics_port: u16,
}

/// The saga worker's and the payment provider's settings; shared by `serve`.
#[derive(Debug, Args)]
pub(crate) struct SagaArgs {
    /// Who charges cards: `stripe` (needs STRIPE_SECRET_KEY) or `local`,
    /// the built-in provider that accepts Stripe's test tokens and moves no
    /// money (local runs only; refused with APP_ENV=production). Chosen
    /// explicitly: a missing key never selects it.
    #[arg(long, env = "PAYMENT_PROVIDER", value_enum, default_value_t = ProviderKind::Stripe)]
    payment_provider: ProviderKind,

    /// Stripe secret key (required with PAYMENT_PROVIDER=stripe).
    #[arg(long, env = "STRIPE_SECRET_KEY", hide_env_values = true)]
    stripe_secret_key: Option<String>,

    /// Stripe's API base URL (a stand-in in tests).
    #[arg(
        long,
        env = "STRIPE_API_BASE",
        default_value = "https://api.stripe.com/"
    )]
    stripe_api_base: String,

    /// Bound on every call to Stripe, in milliseconds.
    #[arg(long, env = "STRIPE_TIMEOUT_MS", default_value_t = 10_000)]
    stripe_timeout_ms: u64,

    /// Consecutive Stripe failures that open the circuit breaker.
    #[arg(long, env = "PAYMENT_BREAKER_THRESHOLD", default_value_t = 5)]
    payment_breaker_threshold: u32,

    /// How long the open breaker fails fast before probing, in milliseconds.
    #[arg(long, env = "PAYMENT_BREAKER_OPEN_MS", default_value_t = 30_000)]
    payment_breaker_open_ms: u64,

    /// When a payment the request left unsettled is re-driven, in seconds.
    #[arg(long, env = "PAYMENT_RECOVERY_SECONDS", default_value_t = 30)]
    payment_recovery_seconds: i64,

    /// How long an unresolved payment may stay open, in seconds: past it,
    /// with no charge found at Stripe, it is failed (capped below Stripe's
    /// 24 h idempotency window).
    #[arg(long, env = "PAYMENT_SETTLE_WITHIN_SECONDS", default_value_t = 7_200)]
    payment_settle_within_seconds: i64,

    /// Payments an order may start (declined cards included); further ones
    /// are refused, so stolen cards cannot be tried against it without limit.
    #[arg(long, env = "PAYMENT_MAX_ATTEMPTS", default_value_t = DEFAULT_MAX_PAYMENT_ATTEMPTS)]
    payment_max_attempts: u32,

    /// How long after a reservation's deadline it is checked, in seconds.
    #[arg(long, env = "RESERVATION_GRACE_SECONDS", default_value_t = 30)]
    reservation_grace_seconds: i64,

    /// Group-commit writers per aggregate type: concurrent commands share
    /// their transactions. 0 commits every command on its own.
    #[arg(long, env = "COMMIT_WRITERS", default_value_t = GroupCommit::default().writers)]
    commit_writers: usize,

    /// Most commands in one group commit.
    #[arg(long, env = "COMMIT_MAX_BATCH", default_value_t = GroupCommit::default().max_batch)]
    commit_max_batch: usize,

    /// How long a command waits for a group-commit writer (and again for
    /// its outcome) before it fails with 503, in milliseconds.
    #[arg(long, env = "COMMIT_WAIT_MS", default_value_t = 5_000)]
    commit_wait_ms: u64,

    /// Polling interval of the saga worker when no timer is due, in ms.
    #[arg(long, env = "SAGA_POLL_INTERVAL_MS", default_value_t = 250)]
    saga_poll_interval_ms: u64,

    /// Timers claimed per round.
    #[arg(long, env = "SAGA_BATCH_SIZE", default_value_t = 100)]
    saga_batch_size: i64,

    /// How long a claim lasts before another worker may fire the timer, in
    /// seconds.
    #[arg(long, env = "SAGA_LEASE_SECONDS", default_value_t = 60)]
    saga_lease_seconds: u64,
}

/// Who charges cards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ProviderKind {
    Stripe,
    Local,
}

/// What the gateway and the saga worker share.
pub(crate) struct Sagas {
    pub(crate) commands: Arc<Commands>,
    pub(crate) payments: Arc<PaymentService>,
}

impl SagaArgs {
    /// Notes the insecure payment settings (see [`Insecure`]).
    pub(crate) fn check(&self, insecure: &mut Insecure) {
        let _ = insecure.check(
            self.payment_provider == ProviderKind::Local,
            "PAYMENT_PROVIDER=local: orders complete and no money moves",
        );
    }

    /// The Stripe key, or `None` for the local provider.
    fn stripe_key(&self) -> anyhow::Result<Option<String>> {
        match self.payment_provider {
            ProviderKind::Local => Ok(None),
            ProviderKind::Stripe => match self.stripe_secret_key.as_deref().map(str::trim) {
                Some(key) if !key.is_empty() => Ok(Some(key.to_owned())),
                _ => anyhow::bail!(
                    "STRIPE_SECRET_KEY is required with PAYMENT_PROVIDER=stripe \
                     (for a local run where no money moves, set PAYMENT_PROVIDER=local)"
                ),
            },
        }
    }

    pub(crate) fn wire(&self, pool: &PgPool) -> anyhow::Result<Sagas> {
        let group_commit = (self.commit_writers > 0).then_some(GroupCommit {
            writers: self.commit_writers,
            max_batch: self.commit_max_batch,
            wait: Duration::from_millis(self.commit_wait_ms),
        });
        let commands = Arc::new(
            Commands::new(
                pool,
                chrono::Duration::seconds(self.reservation_grace_seconds),
            )
            .with_group_commit(group_commit),
        );
        let settings = PaymentSettings {
            stripe_secret_key: self.stripe_key()?,
            stripe_api_base: self.stripe_api_base.clone(),
            stripe_timeout: Duration::from_millis(self.stripe_timeout_ms),
            breaker: BreakerSettings {
                failure_threshold: self.payment_breaker_threshold,
                open_for: Duration::from_millis(self.payment_breaker_open_ms),
            },
        };
        let (provider, _breaker) = settings
            .provider()
            .context("Invalid payment provider settings")?;
        let payments = Arc::new(
            PaymentService::new(
                Arc::clone(&commands),
                provider,
                pool.clone(),
                chrono::Duration::seconds(self.payment_recovery_seconds),
            )
            .with_settle_within(chrono::Duration::seconds(
                self.payment_settle_within_seconds,
            ))
            .with_max_attempts(self.payment_max_attempts),
        );
        Ok(Sagas { commands, payments })
    }

    /// Starts a saga worker until `shutdown`.
    pub(crate) fn spawn(
        &self,
        pool: PgPool,
        sagas: &Sagas,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        let config = SagaConfig {
            batch_size: self.saga_batch_size,
            lease: Duration::from_secs(self.saga_lease_seconds),
            poll_interval: Duration::from_millis(self.saga_poll_interval_ms),
            ..SagaConfig::default()
        };
        let worker = SagaWorker::new(
            pool,
            Arc::clone(&sagas.commands),
            Arc::clone(&sagas.payments),
            config,
        );
        tokio::spawn(worker.run_until_stopped(shutdown))
    }
}

impl Arg {
    pub(crate) async fn main(self, env: AppEnv) -> anyhow::Result<()> {
        let mut insecure = Insecure::default();
        self.saga.check(&mut insecure);
        insecure.enforce(env)?;
        let pool = self.database.connect(false).await?;
        let sagas = self.saga.wire(&pool)?;
        let shutdown = CancellationToken::new();
        let ops = ops_server::spawn(
            self.metrics_host,
            self.metrics_port,
            pool.clone(),
            None,
            Vec::new(),
            shutdown.clone(),
        )
        .await?;
        let worker = self.saga.spawn(pool, &sagas, shutdown.clone());
        shutdown_signal().await;
        shutdown.cancel();
        // The timer in hand is finished (or left to its lease) before exit.
        worker.await.context("saga worker panicked")?;
        let _ = ops.await;
        Ok(())
    }
}
