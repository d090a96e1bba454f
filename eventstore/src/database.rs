use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

/// Every migration of the project, embedded at compile time.
pub static MIGRATOR: Migrator = sqlx::migrate!();

#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("invalid database URL")]
    InvalidUrl(#[source] sqlx::Error),
    #[error("failed to connect to PostgreSQL")]
    Connect(#[source] sqlx::Error),
    #[error("failed to create or drop a scratch database")]
    Scratch(#[source] sqlx::Error),
    #[error("failed to run database migrations")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

/// Opens a pool on `url` holding at most `max_connections` connections.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, DatabaseError> {
    let options: PgConnectOptions = url.parse().map_err(DatabaseError::InvalidUrl)?;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(DatabaseError::Connect)
}

/// Brings the schema up to date; safe to run concurrently from several
/// processes (sqlx serialises migrations with an advisory lock).
pub async fn migrate(pool: &PgPool) -> Result<(), DatabaseError> {
    MIGRATOR.run(pool).await.map_err(DatabaseError::Migrate)
}
