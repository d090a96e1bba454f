//! Read-your-writes as a client sees it: every 200 ms a ticket is created
//! and read back with the `X-Consistency-Token` its creation returned. The
//! gateway holds such a read until the read models have the write, for at
//! most its `CONSISTENCY_WAIT_MS`, then answers 503: a lagging read side
//! shows here as slow reads and 503s. Probes start on a fixed schedule
//! (open loop), so a slow read does not thin out the samples.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Deserialize;
use serde_json::json;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::fixtures::Account;
use crate::measurement::{Measurement, NO_RESPONSE};

/// How often a probe starts.
const PERIOD: Duration = Duration::from_millis(200);

/// The longest a probe's request may take: well past the gateway's
/// consistency wait, so a 503 is seen as one rather than as a timeout.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(30);

const TOKEN_HEADER: &str = "x-consistency-token";

/// A ticket creation's outcome: its status, its time, and for a 201 the
/// id and token of the ticket.
pub(crate) struct Creation {
    pub(crate) status: u16,
    pub(crate) time: Duration,
    pub(crate) created: Option<(String, Option<String>)>,
}

#[derive(Deserialize)]
struct Created {
    id: String,
}

/// `POST /api/tickets` as `account`.
pub(crate) async fn create_ticket(
    client: &reqwest::Client,
    base_url: &str,
    account: &Account,
    title: String,
) -> Creation {
    let started = Instant::now();
    let sent = client
        .post(format!("{base_url}/api/tickets"))
        .header(reqwest::header::COOKIE, &account.cookie)
        .json(&json!({ "title": title, "price": 100 }))
        .send()
        .await;
    let Ok(response) = sent else {
        return Creation {
            status: NO_RESPONSE,
            time: started.elapsed(),
            created: None,
        };
    };
    let status = response.status().as_u16();
    let token = response
        .headers()
        .get(TOKEN_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let body = response.json::<Created>().await;
    let time = started.elapsed();
    let created = match body {
        Ok(created) if status == 201 => Some((created.id, token)),
        _ => None,
    };
    Creation {
        status,
        time,
        created,
    }
}

/// What one probe saw.
enum Probe {
    /// The creation failed (status), so there was nothing to read.
    NotCreated(u16),
    Read {
        status: u16,
        time: Duration,
        with_token: bool,
    },
}

/// What the probes of one phase saw.
pub(crate) struct Probes {
    /// The reads: their latency and statuses (503: the read model had not
    /// caught up within the gateway's wait).
    pub(crate) reads: Measurement,
    /// Creations that failed, by status (no read followed).
    pub(crate) not_created: Measurement,
    /// Creations answered without a token (an older build): read anyway.
    pub(crate) without_token: u64,
}

impl Probes {
    pub(crate) fn unavailable(&self) -> u64 {
        self.reads.count_of(503)
    }

    /// Reads that were neither 200 nor 503, and failed creations.
    pub(crate) fn other_failures(&self) -> u64 {
        self.reads.errors() - self.unavailable() + self.not_created.requests
    }
}

/// Probing in the background until stopped.
pub(crate) struct Prober {
    stop: CancellationToken,
    task: JoinHandle<Vec<Probe>>,
    started: Instant,
    _guard: DropGuard,
}

impl Prober {
    /// Starts probing as `account` (its own, so its creations do not share
    /// a user with the load), numbering tickets `<label>-<n>`.
    pub(crate) fn start(
        client: reqwest::Client,
        base_url: &str,
        account: &Account,
        label: &str,
    ) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(probe_until(
            client,
            base_url.to_owned(),
            account.clone(),
            label.to_owned(),
            stop.clone(),
        ));
        Self {
            _guard: stop.clone().drop_guard(),
            stop,
            task,
            started: Instant::now(),
        }
    }

    /// Stops starting probes, waits for those under way, and sums them up.
    pub(crate) async fn stop(self) -> anyhow::Result<Probes> {
        self.stop.cancel();
        let window = self.started.elapsed();
        let probes = self.task.await.context("the prober panicked")?;
        let mut without_token = 0;
        let mut reads = Vec::new();
        let mut not_created = Vec::new();
        for probe in probes {
            match probe {
                Probe::NotCreated(status) => not_created.push((status, Duration::ZERO)),
                Probe::Read {
                    status,
                    time,
                    with_token,
                } => {
                    without_token += u64::from(!with_token);
                    reads.push((status, time));
                }
            }
        }
        Ok(Probes {
            reads: Measurement::from_requests(reads, window)?,
            not_created: Measurement::from_requests(not_created, window)?,
            without_token,
        })
    }
}

async fn probe_until(
    client: reqwest::Client,
    base_url: String,
    account: Account,
    label: String,
    stop: CancellationToken,
) -> Vec<Probe> {
    let mut under_way = JoinSet::new();
    let mut ticks = tokio::time::interval(PERIOD);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut n = 0_u64;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let (client, base_url, account) = (client.clone(), base_url.clone(), account.clone());
        let title = format!("{label}-{n}");
        n += 1;
        let _ = under_way.spawn(async move { probe(&client, &base_url, &account, title).await });
    }
    // Each request is bounded by the client's timeout, so this ends.
    let mut probes = Vec::new();
    while let Some(joined) = under_way.join_next().await {
        if let Ok(probe) = joined {
            probes.push(probe);
        }
    }
    probes
}

async fn probe(
    client: &reqwest::Client,
    base_url: &str,
    account: &Account,
    title: String,
) -> Probe {
    let creation = create_ticket(client, base_url, account, title).await;
    let Some((id, token)) = creation.created else {
        return Probe::NotCreated(creation.status);
    };
    let mut read = client.get(format!("{base_url}/api/tickets/{id}"));
    if let Some(token) = &token {
        read = read.header(TOKEN_HEADER, token);
    }
    let started = Instant::now();
    let status = match read.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            // The read is done when its body is in.
            match response.bytes().await {
                Ok(_) => status,
                Err(_) => NO_RESPONSE,
            }
        }
        Err(_) => NO_RESPONSE,
    };
    Probe::Read {
        status,
        time: started.elapsed(),
        with_token: token.is_some(),
    }
}
