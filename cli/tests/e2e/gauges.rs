//! What `/metrics` of `ticketing serve` says before anything happened and
//! right after a restart: the counters alert rules read are there at 0, and
//! the backlog gauges never claim a backlog is gone before they measured it.

use std::time::{Duration, Instant};

use reqwest::Client;
use sqlx::{Connection, Executor, PgConnection};
use ticketing_aggregates::{Money, Ticket, TicketCommand, Title};
use ticketing_eventstore::{CommandExecutor, CommandMetadata};
use uuid::Uuid;

use crate::helpers::{samples, start_system};

#[tokio::test(flavor = "multi_thread")]
async fn a_fresh_system_exports_the_alerting_counters_at_zero() {
    let system = start_system().await;
    let client = Client::new();
    let metrics = system.metrics(&client).await.unwrap();

    for (name, labels) in [
        ("dlq_messages_total", &["topic=\"e2e-"][..]),
        ("events_failed_total", &["reason=\"apply\""][..]),
        ("events_failed_total", &["reason=\"decode\""][..]),
        (
            "circuit_breaker_state_changes_total",
            &["breaker=\"stripe\"", "to=\"open\""][..],
        ),
        ("relay_failed_batches_total", &["reason=\"delivery\""][..]),
        ("saga_timer_failures_total", &["kind=\"order-expiry\""][..]),
        // Not an alert's, but a fresh worker has had no lag to yield to.
        (
            "read_side_sweep_ranges_total",
            &["outcome=\"deferred\""][..],
        ),
    ] {
        let found = samples(&metrics, name, labels);
        assert!(
            !found.is_empty() && found.iter().all(|(_, value)| *value == 0.0),
            "{name}{labels:?} should be exported at 0: {found:?}"
        );
    }
    // One series per topic (tickets, orders, payments), none missing.
    assert_eq!(samples(&metrics, "dlq_messages_total", &[]).len(), 3);
}

/// Events committed while the system was down (written straight to the
/// event store) are a backlog when it starts again: the first figure the
/// relay exports is that backlog, not 0; and once they are all published,
/// while the read models cannot take them (a table lock), the consumer lag
/// never reads 0. (Not exactly the backlog: Tansu, the local broker, reports
/// a partition's high watermark as its last record batch's first offset
/// plus one, so only Apache Kafka gives the exact count.)
#[tokio::test(flavor = "multi_thread")]
async fn after_a_restart_the_gauges_report_the_backlog_from_their_first_figure() {
    const BACKLOG: usize = 600;
    let mut system = start_system().await;
    system.kill();
    let mut conn = PgConnection::connect(system.database_url()).await.unwrap();
    let pool = sqlx::PgPool::connect(system.database_url()).await.unwrap();
    let executor = CommandExecutor::<Ticket>::new(pool.clone(), ());
    for n in 0..BACKLOG {
        let command = TicketCommand::Create {
            title: Title::parse(&format!("Backlog ticket {n}")).unwrap(),
            price: Money::from_cents(1_000).unwrap(),
            user_id: "seller".to_owned(),
        };
        let _ = executor
            .execute(
                &Uuid::new_v4().to_string(),
                command,
                &CommandMetadata::default(),
            )
            .await
            .unwrap();
    }
    // The projection cannot apply anything until this transaction ends.
    conn.execute("BEGIN; LOCK TABLE ticket_views IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();

    system.restart();
    let client = Client::new();
    let mut first_backlog = None;
    let mut lag_once_published = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && lag_once_published.len() < 100 {
        if let Some(metrics) = system.metrics(&client).await {
            let backlog = samples(&metrics, "outbox_backlog_events", &[]);
            if first_backlog.is_none() {
                first_backlog = backlog.first().map(|(_, value)| *value);
            }
            let published = backlog.first().is_some_and(|(_, value)| *value == 0.0);
            let lag = samples(&metrics, "consumer_lag_messages", &[]);
            if published && !lag.is_empty() {
                lag_once_published.push(lag.iter().map(|(_, value)| value).sum::<f64>());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    assert_eq!(
        first_backlog,
        Some(BACKLOG as f64),
        "the relay's first backlog figure"
    );
    // The first figures may predate the broker's report of what the relay
    // published; within a second (the lag refresh), it is there for good.
    let settled = &lag_once_published[lag_once_published.len().min(50)..];
    assert!(
        !settled.is_empty()
            && settled
                .iter()
                .all(|lag| *lag > 0.0 && *lag <= BACKLOG as f64),
        "consumer lag while the read model is locked: {lag_once_published:?}"
    );

    conn.execute("COMMIT").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let projected: i64 = sqlx::query_scalar("SELECT count(*) FROM ticket_views")
            .fetch_one(&pool)
            .await
            .unwrap();
        if projected == i64::try_from(BACKLOG).unwrap() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{projected} of {BACKLOG} projected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pool.close().await;
}
