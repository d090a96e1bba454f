use sqlx::PgPool;
use std::sync::Arc;
use ticketing_sagas::{Commands, PaymentService};

use crate::consistency::AppliedWatch;
use crate::page_cache::PageCache;
use crate::revocation::Revocations;
use crate::session::SessionKeys;
use crate::settings::GatewaySettings;
use crate::shedding::WriteShedding;
use crate::startup::{MetricsRender, ReadinessCheck};

/// Shared by every request.
pub(crate) struct AppState {
    /// The primary: the event store, sessions, users, idempotency keys,
    /// and every write.
    pub(crate) pool: PgPool,
    /// A read replica for the query endpoints' view reads
    /// (`READ_DATABASE_URL`); `None` reads them on the primary.
    pub(crate) read_pool: Option<PgPool>,
    /// What reads with a consistency token wait on.
    pub(crate) applied: AppliedWatch,
    /// Hot pages kept in memory; off until the read side's generation is
    /// known (`Application::with_read_generation`).
    pub(crate) pages: PageCache,
    pub(crate) sessions: SessionKeys,
    /// The executors, with the saga timers attached to their commits.
    pub(crate) commands: Arc<Commands>,
    pub(crate) payments: Arc<PaymentService>,
    pub(crate) settings: GatewaySettings,
    /// Extra conditions for `/readyz`, added by the roles running alongside.
    pub(crate) readiness: Vec<(&'static str, ReadinessCheck)>,
    /// Renders `/metrics`; without it the route answers 404.
    pub(crate) metrics: Option<MetricsRender>,
    /// Sheds new writes while the read side is too far behind; never
    /// without it.
    pub(crate) shedding: Option<WriteShedding>,
}

impl AppState {
    pub(crate) fn new(
        settings: GatewaySettings,
        pool: PgPool,
        commands: Arc<Commands>,
        payments: Arc<PaymentService>,
    ) -> Self {
        Self {
            sessions: SessionKeys::new(
                settings.jwt_key.as_bytes(),
                settings.session_ttl,
                settings.secure_cookies,
                Revocations::new(pool.clone()),
            ),
            commands,
            payments,
            applied: AppliedWatch::new(pool.clone(), None),
            pages: PageCache::new(settings.page_cache_bytes, settings.page_cache_max_age, None),
            pool,
            read_pool: None,
            settings,
            readiness: Vec::new(),
            metrics: None,
            shedding: None,
        }
    }

    /// Where the read models (`ticket_views`, `order_views`) are queried:
    /// the replica if there is one. History and `asOf` read the event
    /// store and stay on the primary (a command's events must be visible
    /// to them at once, and no consistency token covers them).
    pub(crate) fn views(&self) -> &PgPool {
        self.read_pool.as_ref().unwrap_or(&self.pool)
    }

    /// Reads the views on `replica` from now on (before serving).
    pub(crate) fn read_from(&mut self, replica: PgPool) {
        self.applied = AppliedWatch::new(self.pool.clone(), Some(replica.clone()));
        self.read_pool = Some(replica);
    }
}
