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
    pub(crate) pool: PgPool,
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
            applied: AppliedWatch::new(pool.clone()),
            pages: PageCache::new(settings.page_cache_bytes, settings.page_cache_max_age, None),
            pool,
            settings,
            readiness: Vec::new(),
            metrics: None,
            shedding: None,
        }
    }
}
