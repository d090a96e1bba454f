//! One publication step, and the loop deciding when to take the next one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::encode::{encode, OutgoingMessage};
use crate::outbox::{self, Cursor, CURSOR_NAME};
use crate::wait::{self, backoff, next_after_failure, next_after_idle, Wait};
use crate::{leader, provision_topics, Publisher, RelayConfig, RelayError, RelayMetrics};

/// What one call to [`try_publish_batch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishOutcome {
    /// This many events were acknowledged and the cursor moved past them.
    Published(usize),
    /// Nothing was safe to publish yet.
    Idle,
}

/// Publishes the next batch of committed events and advances the cursor,
/// all on `conn`, which must hold the relay lock.
///
/// On error the cursor has not moved, so the same events, in the same order,
/// are the next batch.
///
/// Its span is at debug level: the relay polls, and an idle poll is no
/// trace worth exporting. Each event gets its own `relay.publish` span in
/// the trace of the command that wrote it.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn try_publish_batch(
    conn: &mut PgConnection,
    publisher: &Publisher,
    metrics: &RelayMetrics,
) -> Result<PublishOutcome, RelayError> {
    let cursor = outbox::load_cursor(conn, CURSOR_NAME).await?;
    let batch = read_batch(conn, cursor, publisher.config()).await?;
    if batch.is_empty() {
        return Ok(PublishOutcome::Idle);
    }
    publisher.publish_all(&batch).await?;
    acknowledged(conn, &batch, metrics).await?;
    Ok(PublishOutcome::Published(batch.len()))
}

/// The next batch after `after`, encoded and ready to send.
async fn read_batch(
    conn: &mut PgConnection,
    after: Cursor,
    config: &RelayConfig,
) -> Result<Vec<OutgoingMessage>, RelayError> {
    let events = outbox::fetch_publishable(conn, after, config.batch_size).await?;
    events
        .iter()
        .map(|event| encode(event, &config.topics))
        .collect()
}

/// Moves the durable cursor past `batch`, which the broker acknowledged in
/// full; the new cursor.
async fn acknowledged(
    conn: &mut PgConnection,
    batch: &[OutgoingMessage],
    metrics: &RelayMetrics,
) -> Result<Option<Cursor>, RelayError> {
    let Some(last) = batch.last() else {
        return Ok(None);
    };
    let acked_at = Utc::now();
    outbox::save_cursor(conn, CURSOR_NAME, last.cursor).await?;
    metrics.record_published(
        batch.iter().map(|m| (m.topic.as_str(), m.recorded_at)),
        acked_at,
    );
    Ok(Some(last.cursor))
}

/// The relay role: stands by until it holds the lock, then publishes until
/// stopped or until its connection fails, then stands by again.
#[derive(Debug)]
pub struct Relay {
    pool: PgPool,
    config: RelayConfig,
    metrics: Arc<RelayMetrics>,
}

const BACKLOG_REFRESH: Duration = Duration::from_secs(1);
const SUMMARY_PERIOD: Duration = Duration::from_secs(10);
/// Bounds the count query, so a huge backlog stays cheap to measure.
const BACKLOG_BOUND: i64 = 1_000_000;

impl Relay {
    pub fn new(pool: PgPool, config: RelayConfig) -> Self {
        Self {
            pool,
            config,
            metrics: Arc::new(RelayMetrics::default()),
        }
    }

    pub fn metrics(&self) -> Arc<RelayMetrics> {
        Arc::clone(&self.metrics)
    }

    /// Runs until `shutdown` is cancelled. A batch being sent when it is
    /// cancelled is finished first (bounded by the producer's message
    /// timeout), so its cursor is saved. Failures are logged and retried,
    /// never returned: the relay must outlive a broker or database outage.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) {
        self.metrics.register(&self.config.topics.all());
        let retry = self.config.lock_retry_interval;
        let timeout = self.config.leader_timeout;
        while let Some(conn) = leader::acquire(&self.pool, retry, timeout, &shutdown).await {
            tracing::info!("relay lock acquired; publishing");
            self.metrics.set_leader(true);
            let result = self.lead(conn, &shutdown).await;
            self.metrics.set_leader(false);
            match result {
                Ok(()) => break,
                Err(error) => {
                    tracing::error!(error.cause_chain = ?error, error.message = %error, "relay stopped publishing; it will contend for the lock again");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(retry) => {}
            }
        }
        tracing::info!("relay stopped");
    }

    /// Publishes while `conn` (holding the lock) works. Returns `Ok` when
    /// shut down, and the error when the database failed: the lock may be
    /// gone with the connection, and another relay may already lead.
    ///
    /// The cursor is kept in memory while leading (only the leader writes
    /// it). With a backlog, the next batch is read and encoded while the
    /// broker acknowledges the last one; it is sent only once the last one
    /// was acknowledged in full, so a failed batch is re-sent before
    /// anything after it, in the same order.
    async fn lead(
        &self,
        mut conn: PgConnection,
        shutdown: &CancellationToken,
    ) -> Result<(), RelayError> {
        let Some(mut publisher) = self.start_publisher(shutdown).await? else {
            return Ok(());
        };
        let loaded = outbox::load_cursor(&mut conn, CURSOR_NAME).await?;
        let rebased = outbox::rebase_restored(&mut conn, loaded).await?;
        if rebased.moved > 0 || rebased.cursor != loaded {
            tracing::warn!(
                events = rebased.moved,
                cursor.before = ?loaded,
                cursor.after = ?rebased.cursor,
                "events restored from another cluster (their transaction ids are ahead of this \
                 cluster's) were moved before the events written here; restored events after \
                 the first unpublished one are published again"
            );
        }
        let mut cursor = rebased.cursor;
        // After the rebase, which rewrites events: from here on this
        // connection writes only the cursor.
        outbox::save_cursor_without_flush_wait(&mut conn).await?;
        record_backlog(&mut conn, cursor, &self.metrics).await?;
        // Measured beside the loop from then on: publication never waits
        // for a count, which grows with the backlog it measures.
        let (published, measured) = tokio::sync::watch::channel(cursor);
        let stop_measuring = shutdown.child_token();
        let _stop_measuring = stop_measuring.clone().drop_guard();
        drop(tokio::spawn(measure_backlog(
            self.pool.clone(),
            measured,
            Arc::clone(&self.metrics),
            stop_measuring,
        )));
        let mut ahead: Option<Vec<OutgoingMessage>> = None;
        let mut next = Wait::Now;
        let mut summary_at = Instant::now();
        loop {
            let woke = tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok(()),
                woke = wait::until(next, self.config.poll_interval) => woke,
            };
            let batch = match ahead.take() {
                Some(batch) => Ok(batch),
                None => read_batch(&mut conn, cursor, &self.config).await,
            };
            next = match batch {
                Ok(batch) if batch.is_empty() => next_after_idle(woke),
                Ok(batch) => {
                    let full = batch.len() >= self.batch_len();
                    let (sent, read_ahead) = tokio::join!(publisher.publish_all(&batch), async {
                        match batch.last() {
                            Some(last) if full => {
                                Some(read_batch(&mut conn, last.cursor, &self.config).await)
                            }
                            _ => None,
                        }
                    });
                    match sent {
                        Ok(()) => {
                            if let Some(acked) =
                                acknowledged(&mut conn, &batch, &self.metrics).await?
                            {
                                cursor = acked;
                                let _ = published.send(cursor);
                            }
                            // A batch read ahead that failed is read again,
                            // and its error handled, as the next batch.
                            ahead = read_ahead.and_then(Result::ok);
                            // More may be held back by a transaction in
                            // flight: look again shortly.
                            if full {
                                Wait::Now
                            } else {
                                Wait::Recheck(0)
                            }
                        }
                        Err(error) => self.failed(error, woke, &mut publisher).await?,
                    }
                }
                Err(error) => self.failed(error, woke, &mut publisher).await?,
            };
            if summary_at.elapsed() >= SUMMARY_PERIOD {
                summary_at = Instant::now();
                let m = self.metrics.snapshot();
                tracing::debug!(
                    published = m.events_published,
                    backlog = m.backlog,
                    p50_ms = m.latency_p50.as_millis(),
                    p99_ms = m.latency_p99.as_millis(),
                    "relay summary"
                );
            }
        }
    }

    /// What to wait for after a failed step; a database error ends the
    /// lead, since the lock may have gone with the connection.
    async fn failed(
        &self,
        error: RelayError,
        woke: wait::Woke,
        publisher: &mut Publisher,
    ) -> Result<Wait, RelayError> {
        match error {
            error @ RelayError::Database(_) => Err(error),
            error @ RelayError::Delivery { .. } => {
                self.metrics.record_failed_batch("delivery");
                tracing::warn!(error.cause_chain = ?error, error.message = %error, "batch not published; retrying it");
                self.recover(publisher).await;
                Ok(next_after_failure(woke))
            }
            error => {
                // An event this release cannot convert: stop at it (the
                // backlog grows, alerting) until a release that can runs.
                self.metrics.record_failed_batch("blocked");
                tracing::error!(error.cause_chain = ?error, error.message = %error, "relay blocked on an event");
                Ok(next_after_failure(woke))
            }
        }
    }

    /// Provisions the topics, retrying until the broker answers; `None` if
    /// shut down meanwhile.
    async fn start_publisher(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<Option<Publisher>, RelayError> {
        let publisher = Publisher::new(&self.config)?;
        let mut attempt = 0;
        while let Err(error) = self.prepare(&publisher).await {
            tracing::warn!(error.cause_chain = ?error, error.message = %error, "cannot provision topics yet");
            tokio::select! {
                () = shutdown.cancelled() => return Ok(None),
                () = tokio::time::sleep(backoff(attempt)) => {}
            }
            attempt += 1;
        }
        Ok(Some(publisher))
    }

    async fn prepare(&self, publisher: &Publisher) -> Result<(), RelayError> {
        provision_topics(&self.config).await?;
        publisher.warm_up().await
    }

    /// After a failed batch: the broker may have restarted without its
    /// topics (memory storage does) or the producer may be wedged.
    async fn recover(&self, publisher: &mut Publisher) {
        if let Err(error) = provision_topics(&self.config).await {
            tracing::warn!(error.cause_chain = ?error, error.message = %error, "cannot provision topics");
        }
        if let Err(error) = publisher.reset() {
            tracing::warn!(error.cause_chain = ?error, error.message = %error, "cannot recreate the producer");
        }
    }

    fn batch_len(&self) -> usize {
        usize::try_from(self.config.batch_size).unwrap_or(usize::MAX)
    }
}

/// Keeps `outbox_backlog_events` current while leading: every
/// [`BACKLOG_REFRESH`], counts what follows the last published cursor, on a
/// connection of its own. A failed count is retried at the next refresh.
async fn measure_backlog(
    pool: PgPool,
    published: tokio::sync::watch::Receiver<Cursor>,
    metrics: Arc<RelayMetrics>,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(BACKLOG_REFRESH);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let _ = ticks.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let counted = async {
            let mut conn = pool.acquire().await?;
            // Read once connected: a cursor read before a wait for the pool
            // would count what was published meanwhile.
            let cursor = *published.borrow();
            record_backlog(&mut conn, cursor, &metrics).await
        };
        if let Err(error) = counted.await {
            tracing::debug!(error.message = %error, "outbox backlog not measured");
        }
    }
}

/// Counts what follows `cursor` (up to [`BACKLOG_BOUND`]) into
/// `outbox_backlog_events`.
async fn record_backlog(
    conn: &mut PgConnection,
    cursor: Cursor,
    metrics: &RelayMetrics,
) -> sqlx::Result<()> {
    let pending = outbox::backlog(conn, cursor, BACKLOG_BOUND).await?;
    metrics.set_backlog(u64::try_from(pending).unwrap_or_default());
    Ok(())
}
