//! Two workers in one group share the partitions and build the same read
//! models as one worker alone.

use std::time::Duration;

use crate::common::{self, eventually, Producer, RunningProjector, TestDb, TestResult};
use crate::replay::workload;

#[tokio::test]
async fn two_workers_in_a_group_build_the_same_read_models_as_one() -> TestResult {
    let alone = TestDb::create().await?;
    let shared = TestDb::create().await?;
    let config = common::config();
    let producer = Producer::new(&config).await?;
    let mut pair_config = config.clone();
    pair_config.group_id.push_str("-pair");

    let single = RunningProjector::spawn(&alone.pool, &config)?;
    let first = RunningProjector::spawn(&shared.pool, &pair_config)?;
    let second = RunningProjector::spawn(&shared.pool, &pair_config)?;
    first.joined().await?;
    second.joined().await?;
    single.joined().await?;

    let (tickets, orders) = workload(300);
    let total = i64::try_from(tickets.len() + orders.len())?;
    producer.send_all(&config.topics.tickets, &tickets).await?;
    producer.send_all(&config.topics.orders, &orders).await?;
    for db in [&alone, &shared] {
        eventually(Duration::from_secs(60), || async {
            Ok(db.applied_events().await? == total)
        })
        .await?;
    }

    let (a, b) = (first.metrics.snapshot(), second.metrics.snapshot());
    assert!(
        a.events_applied > 0 && b.events_applied > 0,
        "one worker did everything: {} / {}",
        a.events_applied,
        b.events_applied
    );
    for (topic, partition) in a.partitions.keys() {
        assert!(
            !b.partitions.contains_key(&(topic.clone(), *partition)),
            "{topic}/{partition} assigned twice"
        );
    }
    single.stop().await?;
    first.stop().await?;
    second.stop().await?;
    assert_eq!(alone.read_models().await?, shared.read_models().await?);
    alone.drop().await?;
    shared.drop().await
}
