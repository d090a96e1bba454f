use std::future::Future;
use std::sync::Arc;

use sqlx::PgPool;
use ticketing_sagas::{Commands, PaymentService, PaymentSettings, DEFAULT_RESERVATION_GRACE};
use tokio::net::TcpListener;

use crate::auth_limits::{spawn_pruning, AuthGuard, AuthLimits};
use crate::http_server::{serve, HttpLimits};
use crate::page_cache::{PageCache, ReadGeneration};
use crate::routes::router;
use crate::settings::GatewaySettings;
use crate::shedding::{BacklogGauge, WriteShedding};
use crate::state::AppState;

/// A condition `/readyz` requires besides a reachable database, e.g. "the
/// projections are not lagging"; `Err` says why the process is not ready.
pub type ReadinessCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Renders every metric of the process in the Prometheus text format (the
/// process installs the recorder; the gateway only serves what it renders).
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// The HTTP server, bound and ready to run.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    port: u16,
    http_limits: HttpLimits,
    auth_limits: AuthLimits,
}

impl Application {
    /// Binds the listener (port 0 picks a free one) and wires the routes,
    /// with default sagas wiring and the built-in local payment provider.
    pub async fn build(settings: GatewaySettings, pool: PgPool) -> std::io::Result<Self> {
        let commands = Arc::new(Commands::new(&pool, DEFAULT_RESERVATION_GRACE));
        let (provider, _breaker) = PaymentSettings::default()
            .provider()
            .map_err(std::io::Error::other)?;
        let payments = Arc::new(PaymentService::new(
            Arc::clone(&commands),
            provider,
            pool.clone(),
            chrono::Duration::seconds(30),
        ));
        Self::build_with(settings, pool, commands, payments).await
    }

    /// As [`Application::build`], with the command executors and payment
    /// service the caller wired (the same ones its saga worker uses).
    pub async fn build_with(
        settings: GatewaySettings,
        pool: PgPool,
        commands: Arc<Commands>,
        payments: Arc<PaymentService>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind((settings.host, settings.port)).await?;
        let port = listener.local_addr()?.port();
        let state = AppState::new(settings, pool, commands, payments);
        // Loaded before the first request: a signed-out session must not
        // come back with a restart.
        state
            .sessions
            .revocations()
            .start()
            .await
            .map_err(std::io::Error::other)?;
        crate::janitor::spawn(state.pool.clone(), state.settings.idempotency_retention);
        Ok(Self {
            listener,
            state,
            port,
            http_limits: HttpLimits::default(),
            auth_limits: AuthLimits::default(),
        })
    }

    /// Serves the query endpoints' read-model reads (ticket and order
    /// lists and shows) from `replica`, e.g. a streaming replica of the
    /// primary (`READ_DATABASE_URL`); consistency-token waits watch the
    /// replica, and `/readyz` requires it to answer. Everything else (the
    /// event store, history, `asOf`, sessions, users, idempotency keys,
    /// every write) stays on the primary.
    #[must_use]
    pub fn with_read_pool(mut self, replica: PgPool) -> Self {
        self.state.read_from(replica);
        self
    }

    /// Makes `/readyz` also require `check`, reported under `name`.
    #[must_use]
    pub fn with_readiness_check(mut self, name: &'static str, check: ReadinessCheck) -> Self {
        self.state.readiness.push((name, check));
        self
    }

    /// Serves `/metrics` from `render`.
    #[must_use]
    pub fn with_metrics(mut self, render: MetricsRender) -> Self {
        self.state.metrics = Some(render);
        self
    }

    /// Sheds new writes (503, `Retry-After`) while `backlog` reports more
    /// than `bound` events not yet in the read models; `bound` 0 never does.
    #[must_use]
    pub fn with_write_shedding(mut self, bound: u64, backlog: BacklogGauge) -> Self {
        self.state.shedding = (bound > 0).then_some(WriteShedding { bound, backlog });
        self
    }

    /// Serves hot pages from memory (`PAGE_CACHE_BYTES`), keyed by
    /// `generation`, which must move after every change the read models
    /// commit (the projection worker of this process counts them). Without
    /// it nothing is cached.
    #[must_use]
    pub fn with_read_generation(mut self, generation: ReadGeneration) -> Self {
        let settings = &self.state.settings;
        self.state.pages = PageCache::new(
            settings.page_cache_bytes,
            settings.page_cache_max_age,
            Some(generation),
        );
        self
    }

    /// Whether pages are served from memory (see
    /// [`Application::with_read_generation`]).
    pub fn caches_pages(&self) -> bool {
        self.state.pages.is_enabled()
    }

    /// Replaces the default timeouts and connection cap of the listener.
    #[must_use]
    pub fn with_http_limits(mut self, limits: HttpLimits) -> Self {
        self.http_limits = limits;
        self
    }

    /// Replaces the default limits of sign-up and sign-in.
    #[must_use]
    pub fn with_auth_limits(mut self, limits: AuthLimits) -> Self {
        self.auth_limits = limits;
        self
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` completes, then stops accepting and answers
    /// the requests already in flight before returning.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let guard = Arc::new(AuthGuard::new(&self.auth_limits));
        spawn_pruning(&guard);
        let app = router(Arc::new(self.state)).layer(axum::Extension(guard));
        serve(self.listener, app, self.http_limits, shutdown).await
    }
}
