//! The read side's own transactions do not hold back the relay.
//!
//! The relay publishes nothing committed after the oldest transaction of
//! this database that holds a transaction id (`outbox::publish_horizon`).
//! Seen under load: the follower locked its cursor row with `FOR UPDATE`,
//! which takes a transaction id, and then spent its whole step (tens of
//! milliseconds) reading the store and the views, so every event committed
//! meanwhile waited for it; it was the oldest such transaction in about one
//! sample in twelve. A step now takes an id only to move its cursor (or to
//! heal), as it commits.

use ticketing_projections::reconcile::follow::follow_step;
use ticketing_relay::Cursor;

use crate::common::{hold_ticket_views, wait_for_lock_waiter, TestDb, TestResult};
use crate::plans::{project_every_ticket, store_aggregates};

#[tokio::test]
async fn a_follow_step_holds_no_transaction_id_while_it_reads() -> TestResult {
    let db = TestDb::create().await?;
    let mut setup = db.pool.acquire().await?;
    store_aggregates(&mut setup, 2_000).await?;
    project_every_ticket(&mut setup).await?;
    let (transaction_id, last): (i64, i64) = sqlx::query_as(
        "SELECT min(transaction_id::text::bigint), max(global_position) FROM events",
    )
    .fetch_one(&mut *setup)
    .await?;
    let at = move |global_position| Cursor {
        transaction_id,
        global_position,
    };
    // A first step creates the cursor row (that one writes at once).
    let _ = follow_step(&db.pool, at(1), at(last), 5_000).await?;

    // Another session holds the views, so the next step stops at its first
    // read of them, after it has claimed the cursor and read the store.
    let blocker = hold_ticket_views(&db.pool).await?;
    let step = tokio::spawn({
        let pool = db.pool.clone();
        async move { follow_step(&pool, at(last), at(last), 5_000).await }
    });
    let waiting = wait_for_lock_waiter(&mut setup, "relation").await?;
    let (holds_id,): (bool,) =
        sqlx::query_as("SELECT backend_xid IS NOT NULL FROM pg_stat_activity WHERE pid = $1")
            .bind(waiting)
            .fetch_one(&mut *setup)
            .await?;
    blocker.rollback().await?;
    let report = step.await??;

    assert_eq!((report.checked, report.behind), (1_999, 0), "{report:?}");
    assert!(
        !holds_id,
        "a follow step reading the views held a transaction id, holding back the relay"
    );
    drop(setup);
    db.drop().await
}
