use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use chrono::Utc;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use ticketing_eventstore::ScratchDatabase;
use ticketing_schemas::{Envelope, TicketCreatedV1, TicketEventV1, TicketUpdatedV1, WireEvent};
use ticketing_testkit::brokers;
use uuid::Uuid;

pub(crate) use ticketing_testkit::eventually;

const PARTITIONS: i32 = 4;

/// A database, topics and a group of the test's own.
pub(crate) struct Setup {
    database: ScratchDatabase,
    tickets_topic: String,
    suffix: String,
}

impl Setup {
    pub(crate) async fn create() -> anyhow::Result<Setup> {
        let suffix = Uuid::new_v4().simple().to_string();
        let database = ScratchDatabase::create("projector", 5).await?;
        let tickets_topic = format!("kill.tickets.{suffix}");
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .create()?;
        let topic = NewTopic::new(&tickets_topic, PARTITIONS, TopicReplication::Fixed(1));
        for result in admin.create_topics([&topic], &AdminOptions::new()).await? {
            let _ = result.map_err(|(topic, code)| anyhow::anyhow!("{topic}: {code}"))?;
        }
        Ok(Setup {
            database,
            tickets_topic,
            suffix,
        })
    }

    /// Creates `tickets` tickets and updates each until it has `events`.
    pub(crate) async fn produce_tickets(
        &self,
        tickets: usize,
        events: usize,
    ) -> anyhow::Result<()> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("linger.ms", "5")
            .create()?;
        let mut deliveries = Vec::new();
        for sequence in 1..=events {
            for n in 0..tickets {
                let event = if sequence == 1 {
                    TicketEventV1::TicketCreated(TicketCreatedV1 {
                        title: format!("t{n}"),
                        price_cents: 100,
                        user_id: "u".to_owned(),
                        currency: "usd".to_owned(),
                    })
                } else {
                    TicketEventV1::TicketUpdated(TicketUpdatedV1 {
                        title: format!("t{n} v{sequence}"),
                        price_cents: 100,
                    })
                };
                let envelope = Envelope {
                    event_id: Uuid::new_v4(),
                    schema_version: event.schema_version().to_owned(),
                    aggregate_type: "Ticket".to_owned(),
                    aggregate_id: format!("ticket-{n}"),
                    sequence: u64::try_from(sequence)?,
                    global_position: u64::try_from(sequence * tickets + n)?,
                    timestamp: Utc::now(),
                    correlation_id: None,
                    causation_id: None,
                    event,
                };
                let payload = serde_json::to_vec(&envelope)?;
                let record = FutureRecord::to(&self.tickets_topic)
                    .key(&envelope.aggregate_id)
                    .payload(&payload);
                deliveries.push(producer.send_result(record).map_err(|(e, _)| e)?);
            }
        }
        for delivery in futures::future::join_all(deliveries).await {
            let _ = delivery?.map_err(|(e, _)| e)?;
        }
        Ok(())
    }

    pub(crate) async fn applied_events(&self) -> anyhow::Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT coalesce(sum(last_sequence), 0)::bigint FROM ticket_views")
                .fetch_one(self.database.pool())
                .await?,
        )
    }

    pub(crate) async fn views(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM ticket_views")
            .fetch_one(self.database.pool())
            .await?)
    }

    fn group(&self) -> String {
        format!("kill-{}", self.suffix)
    }

    /// The sum of the group's committed offsets on the tickets topic: the
    /// number of messages it is done with. (Compared with what was produced
    /// rather than with the high watermarks: the local broker's ListOffsets
    /// under-reported them here for messages produced in large batches.)
    pub(crate) async fn committed(&self) -> anyhow::Result<i64> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("group.id", self.group())
            .create()?;
        let mut partitions = TopicPartitionList::new();
        for partition in 0..PARTITIONS {
            partitions.add_partition(&self.tickets_topic, partition);
        }
        let committed = consumer.committed_offsets(partitions, Duration::from_secs(10))?;
        Ok(committed
            .elements()
            .iter()
            .map(|element| match element.offset() {
                Offset::Offset(offset) => offset,
                _ => 0,
            })
            .sum())
    }

    pub(crate) async fn drop(self) -> anyhow::Result<()> {
        Ok(self.database.remove().await?)
    }
}

/// A `ticketing project` process.
pub(crate) struct Worker {
    child: Option<Child>,
    /// Where it serves `/healthz`, `/readyz` and `/metrics`.
    pub(crate) metrics_port: u16,
}

impl Worker {
    pub(crate) fn start(setup: &Setup) -> anyhow::Result<Worker> {
        let log = std::env::var_os("TEST_LOG").is_some();
        let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_ticketing"))
            .arg("project")
            .env("METRICS_PORT", metrics_port.to_string())
            .env("DATABASE_URL", setup.database.url())
            .env("DATABASE_MAX_CONNECTIONS", "4")
            .env("KAFKA_BROKERS", brokers())
            .env("TICKETS_TOPIC", &setup.tickets_topic)
            .env("ORDERS_TOPIC", format!("kill.orders.{}", setup.suffix))
            .env("PAYMENTS_TOPIC", format!("kill.payments.{}", setup.suffix))
            .env("KAFKA_TOPIC_PARTITIONS", PARTITIONS.to_string())
            .env("PROJECTION_GROUP_ID", setup.group())
            // Small batches, so that a kill lands between commits.
            .env("PROJECTION_BATCH_SIZE", "50")
            .env("RUST_LOG", if log { "info" } else { "warn" })
            .stdin(Stdio::null())
            .stdout(if log { Stdio::inherit() } else { Stdio::null() })
            .stderr(Stdio::inherit())
            .spawn()?;
        Ok(Worker {
            child: Some(child),
            metrics_port,
        })
    }

    /// SIGKILL: no commit, no leaving the group.
    pub(crate) fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            let _ = child.wait()?;
        }
        Ok(())
    }

    pub(crate) fn terminate(&self) -> anyhow::Result<()> {
        let child = self
            .child
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("not running"))?;
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        Ok(())
    }

    pub(crate) async fn wait(&mut self, limit: Duration) -> anyhow::Result<ExitStatus> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| anyhow::anyhow!("not running"))?;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if tokio::time::Instant::now() > deadline {
                let _ = child.kill();
                anyhow::bail!("did not exit within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}
