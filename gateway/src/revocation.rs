//! Signed-out sessions stay signed out. A session token is valid until it
//! expires unless its id (`jti`) is revoked: sign-out stores the id (with
//! the token's expiry) in `revoked_sessions`, and every gateway keeps the
//! revoked ids in memory, so a request is checked without a database round
//! trip. Another gateway learns of a sign-out within [`REFRESH`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// How often every gateway reads the sign-outs of the others.
pub(crate) const REFRESH: Duration = Duration::from_secs(1);

/// Sign-outs committed this long before the newest one seen are read again
/// at each refresh: a transaction that took its `now()` earlier may commit
/// after a later one was read.
const OVERLAP: chrono::TimeDelta = chrono::TimeDelta::seconds(10);

/// Expired rows are deleted every this many refreshes.
const PURGE_EVERY: u32 = 60;

pub(crate) struct Revocations {
    pool: PgPool,
    /// Revoked token ids, with their tokens' expiry (Unix seconds).
    revoked: RwLock<HashMap<Uuid, i64>>,
    /// The newest `revoked_at` read so far.
    seen: RwLock<Option<DateTime<Utc>>>,
}

impl Revocations {
    pub(crate) fn new(pool: PgPool) -> Arc<Self> {
        Arc::new(Self {
            pool,
            revoked: RwLock::default(),
            seen: RwLock::default(),
        })
    }

    /// Loads every live revocation, then keeps reading new ones in the
    /// background for as long as `self` lives.
    pub(crate) async fn start(self: &Arc<Self>) -> sqlx::Result<()> {
        self.refresh().await?;
        let weak = Arc::downgrade(self);
        drop(tokio::spawn(keep_refreshing(weak)));
        Ok(())
    }

    pub(crate) fn is_revoked(&self, jti: &Uuid) -> bool {
        read(&self.revoked).contains_key(jti)
    }

    /// Ends the session `jti`, valid until `expires` (Unix seconds).
    pub(crate) async fn revoke(&self, jti: Uuid, expires: i64) -> sqlx::Result<()> {
        let _ = sqlx::query(
            "INSERT INTO revoked_sessions (jti, expires_at) VALUES ($1, to_timestamp($2::bigint)) \
             ON CONFLICT (jti) DO NOTHING",
        )
        .bind(jti)
        .bind(expires)
        .execute(&self.pool)
        .await?;
        let _ = write(&self.revoked).insert(jti, expires);
        Ok(())
    }

    async fn refresh(&self) -> sqlx::Result<()> {
        let since = *read(&self.seen);
        let rows: Vec<(Uuid, i64, DateTime<Utc>)> = sqlx::query_as(
            "SELECT jti, extract(epoch FROM expires_at)::bigint, revoked_at FROM revoked_sessions \
             WHERE expires_at > now() AND ($1::timestamptz IS NULL OR revoked_at > $1)",
        )
        .bind(since.map(|seen| seen - OVERLAP))
        .fetch_all(&self.pool)
        .await?;
        if let Some(newest) = rows.iter().map(|(_, _, at)| *at).max() {
            let mut seen = write(&self.seen);
            *seen = Some(seen.map_or(newest, |seen| seen.max(newest)));
        }
        let now = Utc::now().timestamp();
        let mut revoked = write(&self.revoked);
        revoked.retain(|_, expires| *expires > now);
        revoked.extend(rows.into_iter().map(|(jti, expires, _)| (jti, expires)));
        Ok(())
    }

    async fn purge(&self) -> sqlx::Result<()> {
        let _ = sqlx::query("DELETE FROM revoked_sessions WHERE expires_at < now()")
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

async fn keep_refreshing(revocations: Weak<Revocations>) {
    let mut ticks: u32 = 0;
    loop {
        tokio::time::sleep(REFRESH).await;
        let Some(revocations) = revocations.upgrade() else {
            return;
        };
        ticks = ticks.wrapping_add(1);
        let purged = if ticks.is_multiple_of(PURGE_EVERY) {
            revocations.purge().await
        } else {
            Ok(())
        };
        if let Err(error) = purged.and(revocations.refresh().await) {
            tracing::warn!(error.message = %error, "cannot read the revoked sessions");
        }
    }
}

// A panic while holding a lock cannot leave these maps inconsistent.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
