//! Waiting on outcomes, never on fixed sleeps: the shared `eventually`.

use std::future::Future;
use std::panic::Location;
use std::time::Duration;

/// How often a condition is checked.
const CHECK_EVERY: Duration = Duration::from_millis(20);

/// Waits until `condition` holds, checking every 20 ms, for at most
/// `limit`. Fails with the condition's error, or, when time runs out, with
/// a message naming the call site and the limit.
#[track_caller]
pub fn eventually<F, Fut>(
    limit: Duration,
    mut condition: F,
) -> impl Future<Output = anyhow::Result<()>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let caller = Location::caller();
    async move {
        let deadline = tokio::time::Instant::now() + limit;
        let mut checks = 0u32;
        loop {
            checks += 1;
            if condition().await? {
                return Ok(());
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the condition waited on at {caller} was still false after {limit:?} \
                 ({checks} checks)"
            );
            tokio::time::sleep(CHECK_EVERY).await;
        }
    }
}

/// The broker the tests share (`make stack` starts it): `KAFKA_BROKERS`,
/// else the local default.
pub fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_condition_that_never_holds_names_where_it_was_waited_on() {
        let error = eventually(Duration::from_millis(50), || async { Ok(false) })
            .await
            .expect_err("times out");
        let message = error.to_string();
        assert!(message.contains("testkit/src/wait.rs"), "{message}");
        assert!(message.contains("50ms"), "{message}");
    }

    #[tokio::test]
    async fn a_condition_that_holds_later_is_waited_for() {
        let mut calls = 0;
        eventually(Duration::from_secs(5), || {
            calls += 1;
            let done = calls >= 3;
            async move { Ok(done) }
        })
        .await
        .expect("holds on the third check");
        assert_eq!(calls, 3);
    }
}
