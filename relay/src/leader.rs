//! Exactly one active relay: whoever holds a session-level advisory lock.

use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

/// The advisory lock of the Kafka relay ("tkt-rely" in ASCII). Advisory
/// locks are per database, so relays of different databases do not compete.
pub const RELAY_LOCK_KEY: i64 = 0x746b_742d_7265_6c79;

/// Waits until this process holds the relay lock and returns the connection
/// holding it; `None` once `shutdown` is cancelled.
///
/// The lock lives on a dedicated connection, not one from the pool: a pooled
/// connection would be handed to other work, and the lock would go wherever
/// it went. PostgreSQL drops the lock with the connection, which is how a
/// killed leader hands over.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn acquire(
    pool: &PgPool,
    retry: Duration,
    leader_timeout: Duration,
    shutdown: &CancellationToken,
) -> Option<PgConnection> {
    let options: PgConnectOptions = pool
        .connect_options()
        .as_ref()
        .clone()
        .application_name("ticketing-relay")
        .options(liveness(leader_timeout));
    let mut standby: Option<PgConnection> = None;
    let mut announced = false;
    loop {
        let attempt = match standby.take() {
            Some(conn) => Ok(conn),
            None => PgConnection::connect_with(&options).await,
        };
        match attempt {
            Ok(mut conn) => match try_lock(&mut conn).await {
                Ok(true) => return Some(conn),
                Ok(false) => {
                    if !announced {
                        tracing::info!("another relay is active; standing by");
                        announced = true;
                    }
                    standby = Some(conn);
                }
                Err(error) => {
                    tracing::warn!(error.cause_chain = ?error, error.message = %error, "relay lock attempt failed");
                }
            },
            Err(error) => {
                tracing::warn!(error.cause_chain = ?error, error.message = %error, "cannot connect for the relay lock");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(retry) => {}
        }
    }
}

/// Server-side settings of the lock session, so that PostgreSQL itself ends
/// it (and frees the lock) within about `timeout` once the leader's host
/// stops answering: keepalive probes when the session is idle, a TCP user
/// timeout when it has unacknowledged data in flight. Without them a host
/// that vanishes without a FIN or an RST keeps the lock for the kernel's
/// default keepalive time, two hours and more. (Ignored on Unix sockets,
/// where no peer can vanish.)
fn liveness(timeout: Duration) -> [(&'static str, String); 4] {
    let seconds = timeout.as_secs().max(2);
    // Probing starts after half the timeout; three unanswered probes spread
    // over the other half end the session.
    let idle = seconds / 2;
    let interval = ((seconds - idle) / 3).max(1);
    [
        ("tcp_keepalives_idle", idle.to_string()),
        ("tcp_keepalives_interval", interval.to_string()),
        ("tcp_keepalives_count", "3".to_owned()),
        ("tcp_user_timeout", (seconds * 1_000).to_string()),
    ]
}

async fn try_lock(conn: &mut PgConnection) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(RELAY_LOCK_KEY)
        .fetch_one(conn)
        .await
}
