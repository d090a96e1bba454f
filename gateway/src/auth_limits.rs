//! Limits on the credential endpoints (sign-up and sign-in): attempts per
//! client address and per email, each a GCRA budget from `governor` (a burst,
//! refilled at a steady rate), answered 429 with `Retry-After` once spent;
//! and the bounded password-hashing queue behind them.
//!
//! Every attempt counts, successful or not: a limit on failures alone would
//! need to know the outcome before spending the hashing cost the limit is
//! there to protect. The per-email budget means a flood aimed at one account
//! also delays its owner, by design: it is what stops guessing one password
//! from many addresses.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::http::HeaderMap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::client_address::ClientAddressSource;
use crate::email::Email;
use crate::error::ApiError;
use crate::password::PasswordQueue;

/// A budget of attempts: `burst` at once, refilled at `per_minute`.
/// `per_minute` 0 means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_minute: u32,
    pub burst: u32,
}

impl Rate {
    fn quota(self) -> Option<Quota> {
        let per_minute = NonZeroU32::new(self.per_minute)?;
        let burst = NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN);
        Some(Quota::per_minute(per_minute).allow_burst(burst))
    }
}

/// What the credential endpoints allow (see docs/configuration.md).
#[derive(Debug, Clone)]
pub struct AuthLimits {
    /// Attempts per client address. Generous: many users may share one
    /// address behind a NAT.
    pub per_address: Rate,
    /// Attempts per email (normalised: trimmed, lower-case).
    pub per_email: Rate,
    /// Where the client address comes from.
    pub client_address: ClientAddressSource,
    /// Password hashes run at once; 0 means one per core.
    pub hashing_concurrency: usize,
    /// Password hashes waiting for a turn; more get 503 at once.
    pub hashing_queue: usize,
}

impl Default for AuthLimits {
    fn default() -> Self {
        Self {
            per_address: Rate {
                per_minute: 60,
                burst: 30,
            },
            per_email: Rate {
                per_minute: 10,
                burst: 5,
            },
            client_address: ClientAddressSource::default(),
            hashing_concurrency: 0,
            hashing_queue: 64,
        }
    }
}

/// The limits in force, shared by the credential handlers.
pub(crate) struct AuthGuard {
    by_address: Option<DefaultKeyedRateLimiter<IpAddr>>,
    by_email: Option<DefaultKeyedRateLimiter<String>>,
    client_address: ClientAddressSource,
    pub(crate) passwords: PasswordQueue,
}

impl AuthGuard {
    pub(crate) fn new(limits: &AuthLimits) -> Self {
        Self {
            by_address: limits.per_address.quota().map(RateLimiter::keyed),
            by_email: limits.per_email.quota().map(RateLimiter::keyed),
            client_address: limits.client_address.clone(),
            passwords: PasswordQueue::new(limits.hashing_concurrency, limits.hashing_queue),
        }
    }

    /// Spends one attempt of the requesting client's budget.
    pub(crate) fn admit_client(
        &self,
        headers: &HeaderMap,
        peer: SocketAddr,
    ) -> Result<(), ApiError> {
        let client = budget_key(self.client_address.client(headers, peer));
        check(self.by_address.as_ref(), &client, "address")
    }

    /// Spends one attempt of `email`'s budget.
    pub(crate) fn admit_email(&self, email: &Email) -> Result<(), ApiError> {
        check(self.by_email.as_ref(), &email.as_str().to_owned(), "email")
    }

    /// Forgets keys whose budget is full again, so that the maps hold only
    /// recently seen clients and emails, not every one ever seen.
    fn prune(&self) {
        if let Some(limiter) = &self.by_address {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(limiter) = &self.by_email {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// The budget an address spends: its own for IPv4, its /64 network for
/// IPv6, since one host is commonly given a whole /64 and could otherwise
/// spread a flood over 2^64 budgets.
fn budget_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        v4 @ IpAddr::V4(_) => v4,
    }
}

fn check<K>(
    limiter: Option<&DefaultKeyedRateLimiter<K>>,
    key: &K,
    by: &'static str,
) -> Result<(), ApiError>
where
    K: std::hash::Hash + Eq + Clone,
{
    let Some(limiter) = limiter else {
        return Ok(());
    };
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        metrics::counter!("auth_attempts_limited_total", "by" => by).increment(1);
        ApiError::TooManyRequests {
            retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
        }
    })
}

/// Prunes `guard`'s budgets every minute for as long as it is in use.
pub(crate) fn spawn_pruning(guard: &Arc<AuthGuard>) {
    let guard: Weak<AuthGuard> = Arc::downgrade(guard);
    let _pruning = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            let _ = every.tick().await;
            match guard.upgrade() {
                Some(guard) => guard.prune(),
                None => return,
            }
        }
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(raw: &str) -> IpAddr {
        budget_key(raw.parse().unwrap())
    }

    #[test]
    fn an_ipv6_network_shares_one_budget_and_ipv4_addresses_have_their_own() {
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:bbbb::2"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_ne!(key("203.0.113.1"), key("203.0.113.2"));
        assert_eq!(key("::ffff:203.0.113.1"), key("203.0.113.1"));
    }
}
