//! A real Prometheus scrapes `/metrics` of a running system, and its count
//! of published events is the number of events the test produced.
//!
//! Needs `prometheus` on PATH (`make test` installs it through
//! `deploy/local/prometheus.sh`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Client;
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{free_port, start_system};

/// A Prometheus scraping `target` every second, on a free port, with its
/// own configuration and storage (removed when dropped).
struct Prometheus {
    address: String,
    process: Child,
    directory: PathBuf,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let directory =
            std::env::temp_dir().join(format!("ticketing-prometheus-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&directory).unwrap();
        let config = directory.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: ticketing\n    \
                 static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let address = format!("127.0.0.1:{}", free_port());
        let process = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                directory.join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(if std::env::var_os("TEST_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("prometheus on PATH (run deploy/local/prometheus.sh ensure)");
        Prometheus {
            address: format!("http://{address}"),
            process,
            directory,
        }
    }

    /// The value of the instant vector `query` returns, if it has one
    /// series.
    async fn query_scalar(&self, client: &Client, query: &str) -> Option<String> {
        let response = client
            .get(format!("{}/api/v1/query", self.address))
            .query(&[("query", query)])
            .send()
            .await
            .ok()?;
        let body: Value = response.json().await.ok()?;
        let value = body["data"]["result"].get(0)?["value"].get(1)?;
        value.as_str().map(str::to_owned)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

async fn events_in_store(database_url: &str) -> i64 {
    let pool = sqlx::PgPool::connect(database_url).await.unwrap();
    let count = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    count
}

#[tokio::test]
async fn prometheus_counts_every_published_event() {
    let system = start_system().await;
    let prometheus = Prometheus::start(system.address.trim_start_matches("http://"));
    let (client, _) = system.signed_in_client().await;
    for i in 0..3 {
        let (ticket, _) = system
            .create_ticket(&client, &format!("ticket {i}"), 5.0)
            .await;
        if i == 0 {
            let _ = system
                .place_order(&client, ticket["id"].as_str().unwrap())
                .await;
        }
    }
    let produced = events_in_store(system.database_url()).await;
    assert_eq!(produced, 5, "three tickets, a reservation and an order");

    let http = Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut published = None;
    while Instant::now() < deadline {
        published = prometheus
            .query_scalar(&http, "sum(events_published_total)")
            .await;
        if published.as_deref() == Some(produced.to_string().as_str()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    assert_eq!(published, Some(produced.to_string()));
    let up = prometheus
        .query_scalar(&http, "up{job=\"ticketing\"}")
        .await;
    assert_eq!(up.as_deref(), Some("1"), "the scrape itself succeeds");
}
