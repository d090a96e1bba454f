//! The system under test: a running one at a URL, or `ticketing serve`
//! (every role in one process, as `make run` starts it) started here on a
//! free port over a fresh database and fresh topics, stopped and dropped
//! after.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::{Connection, Executor, PgConnection};

use ticketing_eventstore::with_database;

pub(crate) struct System {
    pub(crate) base_url: String,
    /// The system's own database, when known: the pipeline scenario reads
    /// its backlog and freshness there.
    pub(crate) database_url: Option<String>,
    server: Option<Server>,
}

struct Server {
    child: Child,
    admin_url: String,
    database: String,
    log: PathBuf,
}

/// How the harness starts a server.
pub(crate) struct Launch<'a> {
    pub(crate) binary: &'a Path,
    pub(crate) admin_url: &'a str,
    pub(crate) run_id: &'a str,
    pub(crate) work_dir: &'a Path,
}

impl System {
    pub(crate) fn attach(base_url: &str, database_url: Option<String>) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            database_url,
            server: None,
        }
    }

    /// The pid of the server this harness started (none when attached).
    pub(crate) fn server_pid(&self) -> Option<u32> {
        self.server.as_ref().map(|server| server.child.id())
    }

    pub(crate) async fn start(launch: &Launch<'_>) -> anyhow::Result<Self> {
        anyhow::ensure!(
            launch.binary.is_file(),
            "no server binary at {} (build it with `cargo build --release --bin ticketing`, or set LOAD_SERVER_BIN)",
            launch.binary.display()
        );
        let database = format!("ticketing_load_{}", launch.run_id);
        let mut admin = PgConnection::connect(launch.admin_url)
            .await
            .context("connecting to LOAD_ADMIN_DATABASE_URL")?;
        let _ = admin
            .execute(format!("CREATE DATABASE {database}").as_str())
            .await
            .with_context(|| format!("creating {database}"))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = launch
            .work_dir
            .join(format!("server-{}.log", launch.run_id));
        let output =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let prefix = format!("loadtest-{}", launch.run_id);
        let database_url = with_database(launch.admin_url, &database);
        let child = Command::new(launch.binary)
            .arg("serve")
            .env("DATABASE_URL", &database_url)
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            // Fresh topics and group: earlier runs' events stay out.
            .env("TICKETS_TOPIC", format!("{prefix}.tickets.v1"))
            .env("ORDERS_TOPIC", format!("{prefix}.orders.v1"))
            .env("PAYMENTS_TOPIC", format!("{prefix}.payments.v1"))
            .env("PROJECTION_GROUP_ID", &prefix)
            .env("PAYMENT_PROVIDER", "local")
            // The sign-in scenario comes from one host: the per-address and
            // per-email limits would answer most of it with 429.
            .env("AUTH_ADDRESS_PER_MINUTE", "0")
            .env("AUTH_EMAIL_PER_MINUTE", "0")
            .env("PASSWORD_HASH_QUEUE", "100000")
            // The list-orders fixture gives one user thousands of orders.
            .env("MAX_LIVE_ORDERS_PER_USER", "1000000")
            .env(
                "RUST_LOG",
                std::env::var("LOAD_SERVER_RUST_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .spawn()
            .with_context(|| format!("starting {}", launch.binary.display()))?;
        let mut system = Self {
            base_url: format!("http://127.0.0.1:{port}"),
            database_url: Some(database_url),
            server: Some(Server {
                child,
                admin_url: launch.admin_url.to_owned(),
                database,
                log,
            }),
        };
        system.wait_ready(Duration::from_secs(120)).await?;
        Ok(system)
    }

    /// Waits until `/readyz` answers 200 (database up, projections joined).
    async fn wait_ready(&mut self, within: Duration) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + within;
        let url = format!("{}/readyz", self.base_url);
        loop {
            if let Ok(response) = client.get(&url).send().await {
                if response.status().is_success() {
                    return Ok(());
                }
            }
            if let Some(server) = &mut self.server {
                if let Some(status) = server.child.try_wait()? {
                    anyhow::bail!(
                        "the server exited ({status}) before it was ready (log: {})",
                        server.log.display()
                    );
                }
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{url} was not ready within {within:?}{}",
                self.log_hint()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn log_hint(&self) -> String {
        self.server
            .as_ref()
            .map(|server| format!(" (server log: {})", server.log.display()))
            .unwrap_or_default()
    }

    /// Stops a server it started (SIGTERM, then SIGKILL after 30 s) and
    /// drops its database; leaves an attached system alone.
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        let Some(mut server) = self.server.take() else {
            return Ok(());
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(server.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                server.child.kill()?;
                let _ = server.child.wait()?;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut admin = PgConnection::connect(&server.admin_url).await?;
        let _ = admin
            .execute(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", server.database).as_str())
            .await
            .with_context(|| format!("dropping {}", server.database))?;
        Ok(())
    }
}

impl Drop for System {
    /// A run that failed half-way still leaves no server behind.
    fn drop(&mut self) {
        if let Some(server) = &mut self.server {
            let _ = server.child.kill();
            let _ = server.child.wait();
        }
    }
}
