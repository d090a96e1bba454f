//! `ticketing replay dlq list|redrive` against the live system: a message
//! the projector could not apply is dead-lettered, listed with its origin
//! and error, re-driven once its cause is fixed, and applied; a dry run
//! and a second re-drive send nothing.

use std::time::Duration;

use chrono::Utc;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use ticketing_aggregates::{Money, Ticket, TicketCommand, Title};
use ticketing_eventstore::{CommandExecutor, CommandMetadata};
use ticketing_projections::ProjectionConfig;
use ticketing_schemas::{headers, Envelope, TicketEventV1, TicketUpdatedV1, WireEvent};
use uuid::Uuid;

use crate::helpers::{eventually, Live};
use crate::replay;

/// Messages on `topic`, over every partition: the sum of the high
/// watermarks.
fn messages_on(brokers: &str, topic: &str) -> anyhow::Result<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut total = 0;
    for t in metadata.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            total += consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))?
                .1;
        }
    }
    Ok(total)
}

/// The high watermark of one partition.
fn end_of(brokers: &str, topic: &str, partition: i32) -> anyhow::Result<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    Ok(consumer
        .fetch_watermarks(topic, partition, Duration::from_secs(10))?
        .1)
}

async fn ticket_row(live: &Live, id: &str) -> anyhow::Result<Option<(String, i64)>> {
    Ok(
        sqlx::query_as("SELECT title, last_sequence FROM ticket_views WHERE id = $1")
            .bind(id)
            .fetch_optional(&live.pool)
            .await?,
    )
}

fn stdout(output: &std::process::Output) -> String {
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_and_redriven_once_after_the_cause_is_fixed() -> anyhow::Result<()>
{
    let live = Live::start().await?;
    let topic = live.relay.topics.tickets.clone();
    let dlq = ProjectionConfig::dead_letter_topic(&topic);
    let group = format!("test-redrive-{}", Uuid::new_v4().simple());
    let dlq_cmd = |command: &str, dry_run: bool| {
        let mut args = vec!["dlq", command, "--group-id", group.as_str()];
        if dry_run {
            args.push("--dry-run");
        }
        replay(&live, &args)
    };

    // Update #2 of a ticket whose #1 neither the topic nor the event store
    // holds yet (say, published from a store restored ahead of this one):
    // a gap the projector cannot heal, so it parks the message.
    let id = Uuid::new_v4().to_string();
    let update = TicketEventV1::TicketUpdated(TicketUpdatedV1 {
        title: "Opera, late show".to_owned(),
        price_cents: 4_200,
    });
    let envelope = Envelope {
        event_id: Uuid::new_v4(),
        schema_version: update.schema_version().to_owned(),
        aggregate_type: "Ticket".to_owned(),
        aggregate_id: id.clone(),
        sequence: 2,
        global_position: 1_000_000,
        timestamp: Utc::now(),
        correlation_id: None,
        causation_id: None,
        event: update,
    };
    let event_id = envelope.event_id.to_string();
    let payload = serde_json::to_vec(&envelope)?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &live.relay.brokers)
        .set("enable.idempotence", "true")
        .create()?;
    let delivery = producer
        .send(
            FutureRecord::to(&topic).key(&id).payload(&payload).headers(
                OwnedHeaders::new()
                    .insert(Header {
                        key: headers::EVENT_TYPE,
                        value: Some("TicketUpdated"),
                    })
                    .insert(Header {
                        key: headers::EVENT_ID,
                        value: Some(&event_id),
                    }),
            ),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(error, _)| error)?;
    let metrics = live.projector.clone();
    eventually(Duration::from_secs(60), || async {
        Ok(metrics.snapshot().dead_lettered == 1)
    })
    .await?;
    assert_eq!(ticket_row(&live, &id).await?, None);

    // Listed with its origin and why it was parked.
    let listed = stdout(&dlq_cmd("list", false));
    assert!(
        listed.contains(&format!("{dlq}: 1 dead letter(s)")),
        "{listed}"
    );
    let origin = format!("from={topic}/{}@{}", delivery.partition, delivery.offset);
    let line = listed
        .lines()
        .find(|l| l.contains(&format!("key={id}")))
        .unwrap_or_else(|| panic!("no dead letter for {id}: {listed}"));
    assert!(line.contains(&origin), "{line}");
    let json = replay(
        &live,
        &["dlq", "list", "--json", "--group-id", group.as_str()],
    );
    assert!(json.status.success(), "{json:?}");
    let letters: serde_json::Value = serde_json::from_slice(&json.stdout)?;
    let letter = letters
        .as_array()
        .and_then(|all| all.iter().find(|l| l["key"] == id.as_str()))
        .unwrap_or_else(|| panic!("no dead letter for {id} in {letters}"));
    assert_eq!(letter["topic"], dlq.as_str());
    assert_eq!(letter["eventId"], event_id.as_str());
    assert_eq!(
        letter["origin"],
        format!("{topic}/{}@{}", delivery.partition, delivery.offset).as_str()
    );
    assert!(line.contains("event=TicketUpdated"), "{line}");
    assert!(line.contains(&format!("id={event_id}")), "{line}");
    assert!(line.contains("the event store lacks #1"), "{line}");
    // The other two dead-letter topics are empty.
    for other in [&live.relay.topics.orders, &live.relay.topics.payments] {
        let other = ProjectionConfig::dead_letter_topic(other);
        assert!(
            listed.contains(&format!("{other}: 0 dead letter(s)")),
            "{listed}"
        );
    }

    // The cause fixed: the ticket's first event is stored (and relayed).
    let _ = CommandExecutor::<Ticket>::new(live.pool.clone(), ())
        .execute(
            &id,
            TicketCommand::Create {
                title: Title::parse("Opera")?,
                price: Money::from_cents(4_000)?,
                user_id: "seller-1".to_owned(),
            },
            &CommandMetadata::default(),
        )
        .await?;
    eventually(Duration::from_secs(60), || async {
        Ok(ticket_row(&live, &id).await? == Some(("Opera".to_owned(), 1)))
    })
    .await?;
    let on_topic = messages_on(&live.relay.brokers, &topic)?;
    let on_origin = end_of(&live.relay.brokers, &topic, delivery.partition)?;

    // A dry run says what it would do and sends nothing.
    let dry = stdout(&dlq_cmd("redrive", true));
    assert!(
        dry.contains("dry run: would re-drive 1 message(s)"),
        "{dry}"
    );
    assert!(dry.contains(&origin), "{dry}");
    assert_eq!(messages_on(&live.relay.brokers, &topic)?, on_topic);
    let listed = stdout(&dlq_cmd("list", false));
    assert!(
        listed.contains(&format!("{dlq}: 1 dead letter(s)")),
        "{listed}"
    );

    // The re-drive sends it back; the projector applies it.
    let redriven = stdout(&dlq_cmd("redrive", false));
    assert!(
        redriven.contains(&format!("{dlq}: re-drove 1 message(s)")),
        "{redriven}"
    );
    assert_eq!(messages_on(&live.relay.brokers, &topic)?, on_topic + 1);
    assert_eq!(
        end_of(&live.relay.brokers, &topic, delivery.partition)?,
        on_origin + 1,
        "back on the partition it came from"
    );
    eventually(Duration::from_secs(60), || async {
        Ok(ticket_row(&live, &id).await? == Some(("Opera, late show".to_owned(), 2)))
    })
    .await?;
    assert_eq!(live.projector.snapshot().dead_lettered, 1);

    // Its offset is committed: nothing is left to list or to re-drive.
    let listed = stdout(&dlq_cmd("list", false));
    assert!(
        listed.contains(&format!("{dlq}: 0 dead letter(s)")),
        "{listed}"
    );
    let again = stdout(&dlq_cmd("redrive", false));
    assert!(
        again.contains(&format!("{dlq}: re-drove 0 message(s)")),
        "{again}"
    );
    assert_eq!(messages_on(&live.relay.brokers, &topic)?, on_topic + 1);
    live.stop().await
}

#[test]
fn missing_dead_letter_topics_hold_nothing_unless_named() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ticketing"))
            .args(["replay", "dlq"])
            .args(args)
            .env("KAFKA_BROKERS", crate::helpers::brokers())
            .env(
                "TICKETS_TOPIC",
                format!("test-nodlq-{}.tickets", Uuid::new_v4()),
            )
            .env(
                "ORDERS_TOPIC",
                format!("test-nodlq-{}.orders", Uuid::new_v4()),
            )
            .env(
                "PAYMENTS_TOPIC",
                format!("test-nodlq-{}.payments", Uuid::new_v4()),
            )
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    for command in ["list", "redrive"] {
        let output = stdout(&run(&[command]));
        assert_eq!(
            output.matches("no such topic, 0 dead letter(s)").count(),
            3,
            "{output}"
        );
    }
    let named = format!("test-nodlq-{}.dlq", Uuid::new_v4());
    let output = run(&["list", "--topic", &named]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains(&format!("topic {named} does not exist")),
        "{output:?}"
    );
}
