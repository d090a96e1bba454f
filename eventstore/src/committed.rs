//! A signal, within one process, that events were committed: a relay in the
//! same process starts publishing them at once instead of on its next poll.
//!
//! Writers must not NOTIFY inside their transactions (a notifying
//! transaction holds PostgreSQL's notification lock through its commit,
//! which serializes every writer's commit); this costs a commit nothing.
//! A relay in another process keeps polling.

use std::sync::LazyLock;

use tokio::sync::Notify;

static COMMITTED: LazyLock<Notify> = LazyLock::new(Notify::new);

/// Called after every commit that wrote events. Signals coalesce: a burst
/// of commits wakes the waiting relay once.
pub(crate) fn signal() {
    COMMITTED.notify_one();
}

/// Completes at the next commit of events in this process (at once if one
/// happened since the last wait completed).
pub async fn events_committed() {
    COMMITTED.notified().await;
}
