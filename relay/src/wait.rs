//! How long the relay loop waits between steps: for a commit in this
//! process, a poll, a short recheck or a failure backoff.

use std::time::Duration;

use ticketing_eventstore::retry::Backoff;

/// What the loop waits for before the next step.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wait {
    Now,
    /// A commit in this process, or the poll interval.
    ForEvents,
    /// Events were announced but not yet publishable: an older transaction
    /// is still in flight. Look again after a few milliseconds.
    Recheck(u32),
    /// A failed step; give the broker time.
    Backoff(u32),
}

/// Why the loop woke up.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Woke {
    Immediately,
    /// A commit in this process.
    Notified,
    Polled,
    Rechecking(u32),
    BackedOff(u32),
}

/// Short rechecks: 2, 4, … 64 ms, about an eighth of a second in all.
const MAX_RECHECKS: u32 = 6;

/// Waits as `wait` says, waking early on a commit where that helps.
pub(crate) async fn until(wait: Wait, poll_interval: Duration) -> Woke {
    match wait {
        Wait::Now => Woke::Immediately,
        Wait::ForEvents => {
            if wait_for_events(poll_interval).await {
                Woke::Notified
            } else {
                Woke::Polled
            }
        }
        Wait::Recheck(attempt) => {
            let pause = Duration::from_millis(2 << attempt.min(MAX_RECHECKS));
            if wait_for_events(pause).await {
                Woke::Notified
            } else {
                Woke::Rechecking(attempt)
            }
        }
        Wait::Backoff(attempt) => {
            tokio::time::sleep(backoff(attempt)).await;
            Woke::BackedOff(attempt)
        }
    }
}

/// A wake-up that finds nothing publishable means an older
/// transaction is still in flight; it will commit within milliseconds as a
/// rule, and its commit may not notify (it may have written no event).
pub(crate) fn next_after_idle(woke: Woke) -> Wait {
    match woke {
        Woke::Notified | Woke::Immediately => Wait::Recheck(0),
        Woke::Rechecking(attempt) if attempt + 1 < MAX_RECHECKS => Wait::Recheck(attempt + 1),
        _ => Wait::ForEvents,
    }
}

/// Failures in a row back off further each time.
pub(crate) fn next_after_failure(woke: Woke) -> Wait {
    match woke {
        Woke::BackedOff(attempt) => Wait::Backoff(attempt.saturating_add(1)),
        _ => Wait::Backoff(0),
    }
}

/// Whether events were committed in this process before `timeout`.
/// Writers in other processes are found by the poll: nothing sends NOTIFY
/// (a notifying transaction holds the notification lock through its
/// commit, which serializes every writer).
async fn wait_for_events(timeout: Duration) -> bool {
    tokio::select! {
        () = ticketing_eventstore::events_committed() => true,
        () = tokio::time::sleep(timeout) => false,
    }
}

/// 100 ms doubling up to 5 s, jittered.
pub(crate) fn backoff(attempt: u32) -> Duration {
    const OUTAGE: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    OUTAGE.delay(attempt)
}
