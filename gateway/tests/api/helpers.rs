use std::time::Duration;

use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;
use std::sync::Arc;
use ticketing_eventstore::{connect, GroupCommit, ScratchDatabase};
use ticketing_gateway::{Application, GatewaySettings};
use ticketing_sagas::stripe_stand_in::{StripeStandIn, SECRET_KEY};
use ticketing_sagas::{BreakerSettings, Commands, PaymentService, PaymentSettings};
use ticketing_testkit::PgProxy;
use uuid::Uuid;

pub(crate) const JWT_KEY: &str = "test-jwt-key";

pub(crate) struct TestApp {
    pub(crate) address: String,
    pub(crate) pool: PgPool,
    pub(crate) client: Client,
    /// The Stripe stand-in this app's payments go to (real async-stripe client).
    pub(crate) stripe: StripeStandIn,
    database: Option<ScratchDatabase>,
}

/// Starts the gateway on a free port over a fresh, migrated database.
pub(crate) async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub(crate) async fn spawn_app_with(configure: impl FnOnce(&mut GatewaySettings)) -> TestApp {
    spawn_app_built(configure, |app| app).await
}

/// As [`spawn_app_with`], with `build` applied to the application before it
/// runs (to add what a role running alongside would).
pub(crate) async fn spawn_app_built(
    configure: impl FnOnce(&mut GatewaySettings),
    build: impl FnOnce(Application) -> Application,
) -> TestApp {
    let database = test_database().await;
    let pool = database.pool().clone();
    spawn_app_on(database, pool, GroupCommit::default(), configure, build).await
}

/// As [`spawn_app`], the application's pool connecting through a proxy
/// that can lose a COMMIT's reply or cut the database off. The test's own
/// `pool` connects directly.
pub(crate) async fn spawn_app_through_proxy() -> (TestApp, PgProxy) {
    spawn_app_through_proxy_with(GroupCommit::default().wait).await
}

/// As [`spawn_app_through_proxy`], commands waiting at most `wait` for a
/// group commit (see [`GroupCommit::wait`]).
pub(crate) async fn spawn_app_through_proxy_with(wait: Duration) -> (TestApp, PgProxy) {
    let database = test_database().await;
    let proxy = PgProxy::start(database.url())
        .await
        .expect("start the PostgreSQL proxy");
    let pool = connect(&proxy.url(database.url()), 20)
        .await
        .expect("connect through the proxy");
    let group_commit = GroupCommit {
        wait,
        ..GroupCommit::default()
    };
    let app = spawn_app_on(database, pool, group_commit, |_| {}, |app| app).await;
    (app, proxy)
}

/// As [`spawn_app_with`], its query endpoints reading the views from a
/// stand-in for a read replica (`READ_DATABASE_URL`): the same database,
/// through a pool whose sessions see only the `replica` schema's copies of
/// `ticket_views` and `order_views` (filled by [`TestApp::replicate`], so
/// the test decides the replica's lag) and, like a hot standby, refuse
/// every write. Returns that pool too.
pub(crate) async fn spawn_app_with_replica(
    configure: impl FnOnce(&mut GatewaySettings),
) -> (TestApp, PgPool) {
    let database = test_database().await;
    for statement in [
        "CREATE SCHEMA replica",
        "CREATE TABLE replica.ticket_views (LIKE public.ticket_views INCLUDING ALL)",
        "CREATE TABLE replica.order_views (LIKE public.order_views INCLUDING ALL)",
    ] {
        sqlx::query(statement)
            .execute(database.pool())
            .await
            .expect("create the replica's schema");
    }
    let separator = if database.url().contains('?') {
        '&'
    } else {
        '?'
    };
    let url = format!(
        "{}{separator}application_name=ticketing-read\
         &options[search_path]=replica&options[default_transaction_read_only]=on",
        database.url()
    );
    let replica = connect(&url, 10).await.expect("connect the read pool");
    let pool = database.pool().clone();
    let read_pool = replica.clone();
    let app = spawn_app_on(database, pool, GroupCommit::default(), configure, |app| {
        app.with_read_pool(read_pool)
    })
    .await;
    (app, replica)
}

async fn test_database() -> ScratchDatabase {
    ticketing_testkit::init_test_logs("info");
    ScratchDatabase::create("ticketing_test", 20)
        .await
        .expect("create a test database (is PostgreSQL running? `make stack`)")
}

/// Runs the gateway with `pool` over `database`.
async fn spawn_app_on(
    database: ScratchDatabase,
    pool: PgPool,
    group_commit: GroupCommit,
    configure: impl FnOnce(&mut GatewaySettings),
    build: impl FnOnce(Application) -> Application,
) -> TestApp {
    let (address, stripe) = serve_on(pool, group_commit, configure, build).await;
    TestApp {
        address,
        pool: database.pool().clone(),
        client: new_client(),
        stripe,
        database: Some(database),
    }
}

/// Starts a gateway with `pool`; returns its address and Stripe stand-in.
async fn serve_on(
    pool: PgPool,
    group_commit: GroupCommit,
    configure: impl FnOnce(&mut GatewaySettings),
    build: impl FnOnce(Application) -> Application,
) -> (String, StripeStandIn) {
    let mut settings = GatewaySettings::local(JWT_KEY);
    settings.port = 0;
    configure(&mut settings);
    let stripe = StripeStandIn::start()
        .await
        .expect("start the Stripe stand-in");
    let commands = Arc::new(
        Commands::new(&pool, chrono::Duration::seconds(30)).with_group_commit(Some(group_commit)),
    );
    let (provider, _breaker) = PaymentSettings {
        stripe_secret_key: Some(SECRET_KEY.to_owned()),
        stripe_api_base: stripe.base_url(),
        stripe_timeout: Duration::from_secs(5),
        breaker: BreakerSettings {
            failure_threshold: 2,
            open_for: Duration::from_secs(60),
        },
    }
    .provider()
    .expect("payment provider");
    let payments = Arc::new(PaymentService::new(
        Arc::clone(&commands),
        provider,
        pool.clone(),
        chrono::Duration::seconds(30),
    ));
    let app = Application::build_with(settings, pool.clone(), commands, payments)
        .await
        .expect("build the application");
    let app = build(app);
    let address = format!("http://127.0.0.1:{}", app.port());
    let _server = tokio::spawn(app.run_until_stopped(std::future::pending()));
    (address, stripe)
}

impl TestApp {
    /// Another gateway over this app's database, configured by
    /// `configure` (e.g. without the page cache); dropping it leaves the
    /// database to this app.
    pub(crate) async fn twin(&self, configure: impl FnOnce(&mut GatewaySettings)) -> TestApp {
        let (address, stripe) = serve_on(
            self.pool.clone(),
            GroupCommit::default(),
            configure,
            |app| app,
        )
        .await;
        TestApp {
            address,
            pool: self.pool.clone(),
            client: new_client(),
            stripe,
            database: None,
        }
    }
}

/// A client with its own cookie jar: one browser, one user.
pub(crate) fn new_client() -> Client {
    Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("build an HTTP client")
}

/// As [`new_client`], its connections coming from `source`, a loopback
/// address other than 127.0.0.1 (e.g. `127.0.0.2`): another client address
/// as the server's socket sees it.
pub(crate) fn client_from(source: &str) -> Client {
    Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(30))
        .local_address(Some(source.parse().expect("a loopback address")))
        .build()
        .expect("build an HTTP client")
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(database) = self.database.take() {
            database.remove_blocking();
        }
    }
}

/// The password every test user has.
pub(crate) const PASSWORD: &str = "password";

pub(crate) fn unique_email() -> String {
    format!("user-{}@test.com", Uuid::new_v4().simple())
}

impl TestApp {
    /// The server's `host:port`, for raw TCP clients.
    pub(crate) fn socket_address(&self) -> &str {
        self.address.trim_start_matches("http://")
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub(crate) async fn post(&self, client: &Client, path: &str, body: Value) -> Response {
        client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    pub(crate) async fn put(&self, client: &Client, path: &str, body: Value) -> Response {
        client
            .put(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    pub(crate) async fn delete(&self, client: &Client, path: &str) -> Response {
        client.delete(self.url(path)).send().await.expect("request")
    }

    pub(crate) async fn get(&self, client: &Client, path: &str) -> Response {
        client.get(self.url(path)).send().await.expect("request")
    }

    /// Signs `email` up on `client` with the tests' password; the answer.
    pub(crate) async fn sign_up_as(&self, client: &Client, email: &str) -> Response {
        self.post(
            client,
            "/api/users/signup",
            json!({ "email": email, "password": PASSWORD }),
        )
        .await
    }

    /// Signs a new user up on `client`; returns the user's id.
    pub(crate) async fn sign_up(&self, client: &Client) -> String {
        let response = self.sign_up_as(client, &unique_email()).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        body(response).await["id"]
            .as_str()
            .expect("user id")
            .to_owned()
    }

    /// A new signed-in client and its user id.
    pub(crate) async fn signed_in_client(&self) -> (Client, String) {
        let client = new_client();
        let id = self.sign_up(&client).await;
        (client, id)
    }

    /// Creates a ticket as `client`; returns its JSON.
    pub(crate) async fn create_ticket(&self, client: &Client, title: &str, price: Value) -> Value {
        let response = self
            .post(
                client,
                "/api/tickets",
                json!({ "title": title, "price": price }),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        body(response).await
    }

    pub(crate) async fn order(&self, client: &Client, ticket_id: &str) -> Response {
        self.post(client, "/api/orders", json!({ "ticketId": ticket_id }))
            .await
    }

    /// Copies the primary's views to the stand-in replica of
    /// [`spawn_app_with_replica`]: the replica catches up.
    pub(crate) async fn replicate(&self) {
        let mut tx = self.pool.begin().await.expect("begin");
        for view in ["ticket_views", "order_views"] {
            for statement in [
                format!("DELETE FROM replica.{view}"),
                format!("INSERT INTO replica.{view} SELECT * FROM public.{view}"),
            ] {
                sqlx::query(&statement)
                    .execute(&mut *tx)
                    .await
                    .expect("replicate the views");
            }
        }
        tx.commit().await.expect("commit the replication");
    }

    pub(crate) async fn event_count(&self, aggregate_id: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_id = $1")
            .bind(aggregate_id)
            .fetch_one(&self.pool)
            .await
            .expect("count events")
    }
}

pub(crate) async fn body(response: Response) -> Value {
    response.json().await.expect("a JSON body")
}

/// Asserts the status and the contract's error body, entry by entry.
pub(crate) async fn assert_errors(
    response: Response,
    status: StatusCode,
    expected: &[(&str, Option<&str>)],
) {
    assert_eq!(response.status(), status);
    let body = body(response).await;
    let errors = body["errors"].as_array().expect("an errors array");
    let actual: Vec<(String, Option<String>)> = errors
        .iter()
        .map(|e| {
            (
                e["message"].as_str().expect("a message").to_owned(),
                e.get("field").and_then(Value::as_str).map(str::to_owned),
            )
        })
        .collect();
    let expected: Vec<(String, Option<String>)> = expected
        .iter()
        .map(|(m, f)| ((*m).to_owned(), f.map(str::to_owned)))
        .collect();
    assert_eq!(actual, expected, "body: {body}");
}
