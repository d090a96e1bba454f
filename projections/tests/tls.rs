//! Kafka over TLS, for real: a Tansu broker of the test's own (it has no TLS
//! listener) behind stunnel, advertising stunnel's address, with a CA and
//! server certificate made for the test by the openssl CLI. Every client
//! (relay producer and admin, projection consumer, dead-letter producer)
//! gets `security.protocol=ssl` and the CA through the one shared builder.
//!
//! Needs `stunnel4` and `openssl` (`deploy/local/stunnel.sh ensure`, run by
//! `make test`) and the Tansu binary (`make stack`; `TANSU_BIN` overrides).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use ticketing_aggregates::{Money, Ticket, TicketCommand, Title};
use ticketing_eventstore::{CommandExecutor, CommandMetadata, ScratchDatabase};
use ticketing_projections::{ProjectionConfig, Projector};
use ticketing_relay::{provision_topics, KafkaProperties, Relay, RelayConfig, Topics};
use ticketing_testkit::OwnedBroker;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

type TestResult = anyhow::Result<()>;

/// A directory of its own, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn create() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("ticketing-tls-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn openssl(dir: &Path, args: &[&str]) -> TestResult {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .context("cannot run openssl (deploy/local/stunnel.sh ensure installs it)")?;
    anyhow::ensure!(
        output.status.success(),
        "openssl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// A self-signed CA: `<name>.pem` and `<name>.key`.
fn make_ca(dir: &Path, name: &str) -> TestResult {
    let (cert, key, subject) = (
        format!("{name}.pem"),
        format!("{name}.key"),
        format!("/CN=ticketing test {name}"),
    );
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            &subject,
            "-keyout",
            &key,
            "-out",
            &cert,
        ],
    )
}

/// `server.pem`/`server.key`, signed by `ca`, valid for 127.0.0.1: the
/// client checks the broker's name against it (librdkafka's default).
fn make_server_cert(dir: &Path, ca: &str) -> TestResult {
    std::fs::write(
        dir.join("san.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )?;
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "san.cnf",
            "-out",
            "server.pem",
        ],
    )
}

fn stunnel_binary() -> anyhow::Result<&'static str> {
    ["stunnel4", "stunnel"]
        .into_iter()
        .find(|bin| {
            Command::new(bin)
                .arg("-version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok()
        })
        .context(
            "stunnel is missing: this test puts it in front of the broker as its TLS listener; \
             run `bash deploy/local/stunnel.sh ensure` (make test does)",
        )
}

/// stunnel terminating TLS on `port` for the broker on `backend`.
struct Stunnel(Child);

impl Stunnel {
    fn start(dir: &Path, port: u16, backend: u16) -> anyhow::Result<Self> {
        let config = dir.join("stunnel.conf");
        std::fs::write(
            &config,
            format!(
                "foreground = yes\npid =\noutput = {log}\n\n[kafka]\naccept = 127.0.0.1:{port}\n\
                 connect = 127.0.0.1:{backend}\ncert = {cert}\nkey = {key}\n",
                log = dir.join("stunnel.log").display(),
                cert = dir.join("server.pem").display(),
                key = dir.join("server.key").display(),
            ),
        )?;
        let child = Command::new(stunnel_binary()?)
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start stunnel")?;
        let stunnel = Stunnel(child);
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(10),
                "stunnel did not listen on {port}; see its log in {}",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(stunnel)
    }
}

impl Drop for Stunnel {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A broker reachable only through TLS: certificates made by `ca`, Tansu on
/// a port of its own advertising stunnel's.
struct TlsBroker {
    dir: Scratch,
    tls_port: u16,
    _stunnel: Stunnel,
    _broker: OwnedBroker,
}

impl TlsBroker {
    fn start() -> anyhow::Result<Self> {
        let dir = Scratch::create()?;
        make_ca(&dir.0, "ca")?;
        make_ca(&dir.0, "other-ca")?;
        make_server_cert(&dir.0, "ca")?;
        let (tls_port, broker_port) = (free_port()?, free_port()?);
        let broker = OwnedBroker::start_advertising(broker_port, tls_port)?;
        let stunnel = Stunnel::start(&dir.0, tls_port, broker_port)?;
        Ok(Self {
            dir,
            tls_port,
            _stunnel: stunnel,
            _broker: broker,
        })
    }

    fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.tls_port)
    }

    /// What every client gets: TLS, checked against `ca`.
    fn properties(&self, ca: &str) -> KafkaProperties {
        let mut properties = KafkaProperties::default();
        properties.push("security.protocol", "ssl");
        properties.push(
            "ssl.ca.location",
            self.dir.path(&format!("{ca}.pem")).display().to_string(),
        );
        properties
    }

    fn relay_config(&self, ca: &str) -> RelayConfig {
        let suffix = Uuid::new_v4().simple().to_string();
        RelayConfig {
            brokers: self.brokers(),
            kafka_properties: self.properties(ca),
            topics: Topics {
                tickets: format!("tls.tickets.{suffix}"),
                orders: format!("tls.orders.{suffix}"),
                payments: format!("tls.payments.{suffix}"),
            },
            partitions: 2,
            poll_interval: Duration::from_millis(100),
            lock_retry_interval: Duration::from_millis(200),
            ..RelayConfig::default()
        }
    }
}

async fn create_tickets(pool: &sqlx::PgPool, count: usize) -> TestResult {
    let executor = CommandExecutor::<Ticket>::new(pool.clone(), ());
    for n in 0..count {
        let command = TicketCommand::Create {
            title: Title::parse(&format!("over TLS {n}"))?,
            price: Money::from_cents(1000 + i64::try_from(n)?)?,
            user_id: "seller".to_owned(),
        };
        let metadata = CommandMetadata {
            correlation_id: format!("tls-{n}"),
            causation_id: format!("tls-{n}"),
            user_id: Some("seller".to_owned()),
            traceparent: None,
        };
        executor
            .execute(&Uuid::new_v4().to_string(), command, &metadata)
            .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_the_read_model_through_a_tls_listener() -> TestResult {
    const TICKETS: usize = 20;
    let tls = TlsBroker::start()?;
    let scratch = ScratchDatabase::create("tls", 20).await?;
    let pool = scratch.pool().clone();
    let relay_config = tls.relay_config("ca");
    let projection_config = ProjectionConfig {
        brokers: relay_config.brokers.clone(),
        kafka_properties: relay_config.kafka_properties.clone(),
        topics: relay_config.topics.clone(),
        group_id: format!("tls-projections-{}", Uuid::new_v4().simple()),
        partitions: relay_config.partitions,
        statistics_interval: Duration::from_millis(200),
        ..ProjectionConfig::default()
    };

    create_tickets(&pool, TICKETS).await?;
    let shutdown = CancellationToken::new();
    let relay = tokio::spawn(
        Relay::new(pool.clone(), relay_config.clone()).run_until_stopped(shutdown.clone()),
    );
    let projector = Projector::new(pool.clone(), projection_config)?;
    let worker = tokio::spawn(projector.run_until_stopped(shutdown.clone()));

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut projected = 0;
    while projected < TICKETS as i64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        projected = sqlx::query_scalar("SELECT count(*) FROM ticket_views")
            .fetch_one(&pool)
            .await?;
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), relay).await??;
    tokio::time::timeout(Duration::from_secs(30), worker).await???;
    anyhow::ensure!(
        projected == TICKETS as i64,
        "{projected} of {TICKETS} tickets reached the read model over TLS within 60 s"
    );
    // Every byte went through the terminator: the broker advertised only
    // stunnel's port, and stunnel logs each TLS connection it accepted.
    let log = std::fs::read_to_string(tls.dir.path("stunnel.log")).unwrap_or_default();
    anyhow::ensure!(
        log.contains("accepted connection"),
        "stunnel accepted no connection:\n{log}"
    );
    scratch.remove().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_certificate_from_another_ca_is_refused() -> TestResult {
    let tls = TlsBroker::start()?;
    // The same listener with the right CA: the broker does answer.
    tokio::time::timeout(
        Duration::from_secs(20),
        provision_topics(&tls.relay_config("ca")),
    )
    .await
    .context("provisioning with the right CA did not finish")??;

    // With another CA the handshake fails, so nothing is ever sent: the
    // admin request gives up within its timeout.
    let started = Instant::now();
    let refused = tokio::time::timeout(
        Duration::from_secs(30),
        provision_topics(&tls.relay_config("other-ca")),
    )
    .await
    .context("the client with the wrong CA neither failed nor succeeded within 30 s")?;
    anyhow::ensure!(
        refused.is_err(),
        "a client trusting another CA created topics through the TLS listener"
    );
    anyhow::ensure!(started.elapsed() < Duration::from_secs(30));
    Ok(())
}
