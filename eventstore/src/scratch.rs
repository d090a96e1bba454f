//! Throwaway databases for tests and benchmarks: each gets a fresh, migrated
//! database of its own on the server at `DATABASE_URL`, so they run in
//! parallel without sharing state, and removes it afterwards.

use sqlx::{Connection, PgConnection, PgPool};

use crate::{connect, migrate, DatabaseError};

const LOCAL_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub struct ScratchDatabase {
    pool: PgPool,
    url: String,
    name: String,
    admin_url: String,
}

/// `url` with its database name replaced by `database` (query string kept;
/// a URL without a database path gets one): how scratch databases and the
/// benchmarks address a database of their own on the same server.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_and_path = &base[scheme_end..];
    let authority = host_and_path
        .find('/')
        .map_or(host_and_path, |slash| &host_and_path[..slash]);
    let mut result = format!("{}{authority}/{database}", &base[..scheme_end]);
    if let Some(query) = query {
        result.push('?');
        result.push_str(query);
    }
    result
}

async fn admin_execute(admin_url: &str, sql: &str) -> Result<(), DatabaseError> {
    let mut admin = PgConnection::connect(admin_url)
        .await
        .map_err(DatabaseError::Connect)?;
    let _ = sqlx::query(sql)
        .execute(&mut admin)
        .await
        .map_err(DatabaseError::Scratch)?;
    Ok(())
}

impl ScratchDatabase {
    /// The server scratch databases are created on: `DATABASE_URL`, whose
    /// role must be allowed to CREATE DATABASE, else the local default.
    pub fn admin_url() -> String {
        std::env::var("DATABASE_URL").unwrap_or_else(|_| LOCAL_SERVER.to_owned())
    }

    /// Creates `<prefix>_<uuid>`, migrates it and opens a pool on it.
    pub async fn create(prefix: &str, max_connections: u32) -> Result<Self, DatabaseError> {
        let admin_url = Self::admin_url();
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        admin_execute(&admin_url, &format!(r#"CREATE DATABASE "{name}""#)).await?;
        let url = with_database(&admin_url, &name);
        let pool = connect(&url, max_connections).await?;
        migrate(&pool).await?;
        Ok(Self {
            pool,
            url,
            name,
            admin_url,
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Its URL, for processes started against it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Closes the pool and drops the database.
    pub async fn remove(self) -> Result<(), DatabaseError> {
        self.pool.close().await;
        admin_execute(&self.admin_url, &self.drop_statement()).await
    }

    /// Drops the database from outside any async context (a `Drop` impl):
    /// on a thread of its own, forcing off the connections still open.
    /// It borrows, so that a fixture holding the database by value can call
    /// it from its own `Drop`.
    pub fn remove_blocking(&self) {
        let (admin_url, statement) = (self.admin_url.clone(), self.drop_statement());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                if let Err(error) = runtime.block_on(admin_execute(&admin_url, &statement)) {
                    tracing::warn!(%error, "failed to drop a scratch database");
                }
            }
        })
        .join();
    }

    fn drop_statement(&self) -> String {
        format!(r#"DROP DATABASE IF EXISTS "{}" WITH (FORCE)"#, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_name_is_replaced_and_the_query_kept() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h/postgres?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgresql://u:p@db:5432?sslmode=require", "x"),
            "postgresql://u:p@db:5432/x?sslmode=require"
        );
    }
}
