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
}

impl DatabaseArg {
    /// A pool of at most `max_connections` of its own, for a part of the
    /// process that must not queue behind the rest for connections.
    pub(crate) async fn connect_with(&self, max_connections: u32) -> anyhow::Result<PgPool> {
        ticketing_eventstore::connect(&self.database_url, max_connections)
            .await
            .context("Failed to open the database pool")
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
