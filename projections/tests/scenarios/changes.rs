//! Every commit that changes a view is announced to other processes, so
//! that pages they keep in memory (the gateway's page cache) are dropped at
//! once.

use std::time::Duration;

use ticketing_projections::changes::{self, Changes};
use tokio_util::sync::CancellationToken;

use crate::common::{
    self, eventually, produce, ticket, Producer, RunningProjector, TestDb, TestResult,
};

#[tokio::test]
async fn a_listener_hears_of_each_commit_of_a_worker_in_another_process() -> TestResult {
    let db = TestDb::create().await?;
    let config = common::config();
    let stop_listening = CancellationToken::new();
    // Its own pool: as a gateway in another process would listen.
    let listening_pool =
        sqlx::PgPool::connect_with(db.pool.connect_options().as_ref().clone()).await?;
    let (heard, _task) = Changes::listen(&listening_pool, stop_listening.clone()).await?;
    let worker = RunningProjector::spawn(&db.pool, &config)?;
    worker.joined().await?;

    for n in 1..=3u64 {
        let before = heard.generation();
        let id = format!("t-{n}");
        Producer::new(&config)
            .await?
            .send_all(
                &config.topics.tickets,
                &[produce(&id, 1, n, ticket("Opera", 2500, "seller"))],
            )
            .await?;
        eventually(Duration::from_secs(30), || async {
            Ok(db.applied_events().await? >= i64::try_from(n)?)
        })
        .await?;
        eventually(Duration::from_secs(5), || async {
            Ok(heard.generation() > before)
        })
        .await?;
    }

    // A commit outside a worker (a rebuild's swap) is announced the same way.
    let before = heard.generation();
    changes::announce(&db.pool).await?;
    eventually(Duration::from_secs(5), || async {
        Ok(heard.generation() > before)
    })
    .await?;

    worker.stop().await?;
    stop_listening.cancel();
    listening_pool.close().await;
    db.drop().await
}
