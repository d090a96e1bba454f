use anyhow::Context;
use clap::Args;
use sqlx::PgPool;

/// Where the event store and the read models live.
#[derive(Debug, Clone, Args)]
pub(crate) struct DatabaseArg {
    /// PostgreSQL URL (the password, if any, is never logged).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/ticketing",
        hide_env_values = true
    )]
    database_url: String,

    /// Connections in the pool.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 32)]
    database_max_connections: u32,

    /// Apply pending migrations at start-up (`--migrate` alone means true).
    /// `migrate` always does and `serve` does unless told not to; the other
    /// roles only when asked, so that production roles run without DDL
    /// rights (the migrate Job migrates).
    #[arg(
        long = "migrate",
        env = "MIGRATE_ON_START",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    migrate_on_start: Option<bool>,
}

impl DatabaseArg {
    /// A pool of at most `max_connections` of its own, for a part of the
    /// process that must not queue behind the rest for connections.
    pub(crate) async fn connect_with(&self, max_connections: u32) -> anyhow::Result<PgPool> {
        ticketing_eventstore::connect(&self.database_url, max_connections)
            .await
            .context("Failed to open the database pool")
    }

    /// A pool of the same size on a read replica at `url` (never migrated:
    /// a replica follows the primary's schema and refuses DDL).
    pub(crate) async fn connect_read_replica(&self, url: &str) -> anyhow::Result<PgPool> {
        ticketing_eventstore::connect(url, self.database_max_connections)
            .await
            .context("Failed to open the read replica's pool")
    }

    /// Connects, and migrates if `--migrate`/`MIGRATE_ON_START` says so or,
    /// when neither is given, if `by_default`.
    pub(crate) async fn connect(&self, by_default: bool) -> anyhow::Result<PgPool> {
        if self.migrate_on_start.unwrap_or(by_default) {
            self.connect_and_migrate().await
        } else {
            self.connect_with(self.database_max_connections).await
        }
    }

    /// Connects and applies pending migrations.
    pub(crate) async fn connect_and_migrate(&self) -> anyhow::Result<PgPool> {
        let pool = ticketing_eventstore::connect(&self.database_url, self.database_max_connections)
            .await
            .context("Failed to open the database pool")?;
        ticketing_eventstore::migrate(&pool)
            .await
            .context("Failed to migrate the database")?;
        Ok(pool)
    }
}
