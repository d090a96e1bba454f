use std::net::IpAddr;
use std::time::Duration;

/// What the gateway needs to serve; the binary fills it from the environment
/// (see docs/configuration.md).
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub host: IpAddr,
    /// 0 picks a free port (tests).
    pub port: u16,
    /// HS256 secret signing session tokens.
    pub jwt_key: String,
    pub session_ttl: Duration,
    /// Mark the session cookie `Secure` (behind TLS).
    pub secure_cookies: bool,
    /// How long an order holds its ticket before it expires.
    pub order_expiration: Duration,
    /// Largest request body accepted; larger ones get 413.
    pub body_limit_bytes: usize,
    /// How long a query carrying a consistency token waits for the read
    /// models to catch up before answering 503.
    pub consistency_wait: Duration,
    /// Page size of list endpoints when the client gives no `limit`, and the
    /// largest `limit` accepted.
    pub list_limit: u32,
    /// Live orders (placed, not yet paid, cancelled or expired) one user
    /// may hold; a further placement gets 400.
    pub max_live_orders: u32,
    /// How long an `Idempotency-Key` is remembered.
    pub idempotency_retention: Duration,
    /// Memory for pages served without a query (bodies and keys), in
    /// bytes; 0 turns the page cache off.
    pub page_cache_bytes: u64,
    /// How long a page may be served from memory at most; it is dropped
    /// sooner when the read models change (see `page_cache`).
    pub page_cache_max_age: Duration,
}

impl GatewaySettings {
    /// Defaults for local runs and tests.
    pub fn local(jwt_key: impl Into<String>) -> Self {
        Self {
            host: IpAddr::from([127, 0, 0, 1]),
            port: 3000,
            jwt_key: jwt_key.into(),
            session_ttl: Duration::from_secs(24 * 60 * 60),
            secure_cookies: false,
            order_expiration: Duration::from_secs(15 * 60),
            body_limit_bytes: 64 * 1024,
            consistency_wait: Duration::from_secs(5),
            list_limit: 1000,
            max_live_orders: 10,
            idempotency_retention: Duration::from_secs(24 * 60 * 60),
            page_cache_bytes: 64 * 1024 * 1024,
            page_cache_max_age: Duration::from_secs(1),
        }
    }
}
