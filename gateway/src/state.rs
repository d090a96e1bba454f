use sqlx::PgPool;
use ticketing_aggregates::{Order, Ticket};
use ticketing_eventstore::CommandExecutor;

use crate::session::SessionKeys;
use crate::settings::GatewaySettings;
use crate::startup::{MetricsRender, ReadinessCheck};

/// Shared by every request.
pub(crate) struct AppState {
    pub(crate) pool: PgPool,
    pub(crate) sessions: SessionKeys,
    pub(crate) tickets: CommandExecutor<Ticket>,
    pub(crate) orders: CommandExecutor<Order>,
    pub(crate) settings: GatewaySettings,
    /// Extra conditions for `/readyz`, added by the roles running alongside.
    pub(crate) readiness: Vec<(&'static str, ReadinessCheck)>,
    /// Renders `/metrics`; without it the route answers 404.
    pub(crate) metrics: Option<MetricsRender>,
}

impl AppState {
    pub(crate) fn new(settings: GatewaySettings, pool: PgPool) -> Self {
        Self {
            sessions: SessionKeys::new(
                settings.jwt_key.as_bytes(),
                settings.session_ttl,
                settings.secure_cookies,
            ),
            tickets: CommandExecutor::new(pool.clone(), ()),
            orders: CommandExecutor::new(pool.clone(), ()),
            pool,
            settings,
            readiness: Vec::new(),
            metrics: None,
        }
    }
}
