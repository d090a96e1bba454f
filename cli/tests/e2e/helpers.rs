use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};
use ticketing_eventstore::ScratchDatabase;
use uuid::Uuid;

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `ticketing serve` with its own database and topics.
pub(crate) struct System {
    pub(crate) address: String,
    process: Child,
    database: Option<ScratchDatabase>,
    database_url: String,
    port: u16,
    suffix: String,
    env: Vec<(String, String)>,
}

pub(crate) async fn start_system() -> System {
    start_system_with(&[]).await
}

pub(crate) async fn start_system_with(env: &[(&str, &str)]) -> System {
    let suffix = Uuid::new_v4().simple().to_string();
    let database = ScratchDatabase::create("ticketing_e2e", 2).await.unwrap();
    let port = free_port();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    let process = spawn_serve(database.url(), port, &suffix, &env);
    let system = System {
        address: format!("http://127.0.0.1:{port}"),
        process,
        database_url: database.url().to_owned(),
        database: Some(database),
        port,
        suffix,
        env,
    };
    system.wait_until_ready().await;
    system
}

fn spawn_serve(database_url: &str, port: u16, suffix: &str, env: &[(String, String)]) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ticketing"));
    let _ = command
        .arg("serve")
        .env("DATABASE_URL", database_url)
        .env("PORT", port.to_string())
        .env("TICKETS_TOPIC", format!("e2e-{suffix}.tickets.v1"))
        .env("ORDERS_TOPIC", format!("e2e-{suffix}.orders.v1"))
        .env("PAYMENTS_TOPIC", format!("e2e-{suffix}.payments.v1"))
        .env("PROJECTION_GROUP_ID", format!("e2e-{suffix}"))
        // A test that pays through the Stripe stand-in sets `stripe`.
        .env("PAYMENT_PROVIDER", "local")
        .env(
            "RUST_LOG",
            std::env::var("TEST_LOG").map_or("warn".to_owned(), |_| "info".to_owned()),
        )
        .stdin(Stdio::null())
        .stdout(if std::env::var_os("TEST_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::inherit());
    for (name, value) in env {
        let _ = command.env(name, value);
    }
    command.spawn().unwrap()
}

impl System {
    /// The system's own database.
    pub(crate) fn database_url(&self) -> &str {
        &self.database_url
    }

    /// Another replica of the deployment: a `ticketing serve` on the same
    /// database and topics, with `env` of its own. Drop it before `self`,
    /// which owns the database.
    pub(crate) async fn beside(&self, env: &[(&str, &str)]) -> System {
        let port = free_port();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        let system = System {
            address: format!("http://127.0.0.1:{port}"),
            process: spawn_serve(&self.database_url, port, &self.suffix, &env),
            database: None,
            database_url: self.database_url.clone(),
            port,
            suffix: self.suffix.clone(),
            env,
        };
        system.wait_until_ready().await;
        system
    }

    /// Kills the process at once (SIGKILL: no batch is finished, no offset
    /// committed), leaving its database and topics.
    pub(crate) fn kill(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }

    /// Whether the process has died (and how), as a supervisor would see.
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.process.try_wait().ok().flatten()
    }

    /// Starts the process again on the same database and topics, without
    /// waiting for it to be ready.
    pub(crate) fn restart(&mut self) {
        self.kill();
        self.process = spawn_serve(self.database_url(), self.port, &self.suffix, &self.env);
    }

    /// The Prometheus text `/metrics` answers, if it answers.
    pub(crate) async fn metrics(&self, client: &Client) -> Option<String> {
        let response = client.get(self.url("/metrics")).send().await.ok()?;
        if response.status() != StatusCode::OK {
            return None;
        }
        response.text().await.ok()
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub(crate) async fn wait_until_ready(&self) {
        let client = Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(response) = client.get(self.url("/readyz")).send().await {
                if response.status() == StatusCode::OK {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "ticketing serve did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) async fn signed_in_client(&self) -> (Client, String) {
        let client = Client::builder().cookie_store(true).build().unwrap();
        let email = format!("user-{}@test.com", Uuid::new_v4().simple());
        let response = client
            .post(self.url("/api/users/signup"))
            .json(&json!({ "email": email, "password": "password" }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let id = response.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        (client, id)
    }

    /// POSTs `body`; returns the response's JSON and consistency token.
    pub(crate) async fn command(
        &self,
        client: &Client,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value, String) {
        let mut request = client.request(method, self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let token = response
            .headers()
            .get("x-consistency-token")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = if status == StatusCode::NO_CONTENT {
            Value::Null
        } else {
            response.json().await.unwrap()
        };
        (status, body, token)
    }

    pub(crate) async fn create_ticket(
        &self,
        client: &Client,
        title: &str,
        price: f64,
    ) -> (Value, String) {
        let (status, ticket, token) = self
            .command(
                client,
                reqwest::Method::POST,
                "/api/tickets",
                Some(json!({ "title": title, "price": price })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        (ticket, token)
    }

    pub(crate) async fn place_order(&self, client: &Client, ticket_id: &str) -> (Value, String) {
        let (status, order, token) = self
            .command(
                client,
                reqwest::Method::POST,
                "/api/orders",
                Some(json!({ "ticketId": ticket_id })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{order}");
        (order, token)
    }

    /// GET `path` as `client`, after the writes `token` names.
    pub(crate) async fn get_after(&self, client: &Client, path: &str, token: &str) -> Response {
        client
            .get(self.url(path))
            .header("x-consistency-token", token)
            .send()
            .await
            .unwrap()
    }
}

impl Drop for System {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        if let Some(database) = self.database.take() {
            database.remove_blocking();
        }
    }
}

/// The samples of metric `name` in a Prometheus text exposition whose
/// labels contain every one of `labels` (`key="value"`), as (labels, value).
pub(crate) fn samples<'a>(exposition: &'a str, name: &str, labels: &[&str]) -> Vec<(&'a str, f64)> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, series_labels) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            (metric == name && labels.iter().all(|l| series_labels.contains(l)))
                .then(|| Some((series_labels, value.parse().ok()?)))
                .flatten()
        })
        .collect()
}
