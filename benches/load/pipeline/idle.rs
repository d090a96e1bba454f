//! The idle run: ticket creations at a fixed, modest rate (open loop: each
//! starts on schedule whether or not earlier ones have been answered), to
//! see how fresh the read models are when the system is not saturated.

use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::prober::create_ticket;
use crate::fixtures::Account;
use crate::measurement::Measurement;

/// Creates `rate` tickets a second for `duration` as `account`, and
/// measures them once all have been answered.
pub(crate) async fn paced_creations(
    client: &reqwest::Client,
    base_url: &str,
    account: &Account,
    rate: u32,
    duration: Duration,
    label: &str,
) -> anyhow::Result<Measurement> {
    anyhow::ensure!(rate > 0, "the idle rate must be at least 1 a second");
    let period = Duration::from_secs(1) / rate;
    let mut ticks = tokio::time::interval(period);
    // A late tick (a busy harness) is made up at once: the rate holds.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut under_way = JoinSet::new();
    let mut n = 0_u64;
    loop {
        let _ = ticks.tick().await;
        if started.elapsed() >= duration {
            break;
        }
        let (client, base_url, account) = (client.clone(), base_url.to_owned(), account.clone());
        let title = format!("{label}-{n}");
        n += 1;
        let _ = under_way.spawn(async move {
            let creation = create_ticket(&client, &base_url, &account, title).await;
            (creation.status, creation.time)
        });
    }
    let window = started.elapsed();
    let mut answered = Vec::new();
    while let Some(joined) = under_way.join_next().await {
        if let Ok(request) = joined {
            answered.push(request);
        }
    }
    Measurement::from_requests(answered, window)
}
