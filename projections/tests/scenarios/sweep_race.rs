//! The sweep judges a view row against a read of the store no older than
//! the row.

use ticketing_projections::reconcile::sweep::compare_range;
use ticketing_projections::AggregateKind;
use ticketing_relay::Cursor;

use crate::common::{hold_ticket_views, wait_for_lock_waiter, TestDb, TestResult};
use crate::plans::{project_every_ticket, store_aggregates};

/// The sweep reads the store, then the views, each in a statement of its
/// own. A ticket whose event commits between the two, and whose row the
/// projector writes at once, showed up as a view row the store lacked: an
/// "orphan", deleted with nothing to heal it from, so a client's
/// read-your-writes read of its new ticket found 404 (seen once in 861
/// create-then-read rounds in CI). A row is judged an orphan, or ahead of
/// the store, only by a read of the store taken after the views'.
#[tokio::test]
async fn a_row_written_while_the_sweep_compares_is_not_an_orphan() -> TestResult {
    let db = TestDb::create().await?;
    let mut watcher = db.pool.acquire().await?;
    // The views held, so the sweep's range stops at its read of them,
    // after it has read the store.
    let mut writer = hold_ticket_views(&db.pool).await?;
    let compare = tokio::spawn({
        let pool = db.pool.clone();
        async move {
            let mut tx = pool.begin().await?;
            let range = compare_range(
                &mut tx,
                AggregateKind::Ticket,
                "",
                100,
                Cursor {
                    transaction_id: i64::MAX,
                    global_position: i64::MAX,
                },
            )
            .await?;
            tx.commit().await?;
            Ok::<_, anyhow::Error>(range)
        }
    });
    let _ = wait_for_lock_waiter(&mut watcher, "relation").await?;
    // Meanwhile a ticket is created and projected at once.
    store_aggregates(&mut writer, 1).await?;
    project_every_ticket(&mut writer).await?;
    writer.commit().await?;
    let range = compare.await??;

    assert_eq!(
        range.differences,
        Vec::new(),
        "a row projected during the comparison was judged against an older read of the store"
    );
    drop(watcher);
    db.drop().await
}
