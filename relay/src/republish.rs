//! Republishing stored events to Kafka: from a global position, or one
//! aggregate's, to the usual topics (consumers deduplicate on the unchanged
//! `eventId`s and on their checkpoints) or to a new topic version.
//!
//! Messages are built by the relay's own encoder and sent by its publisher,
//! in its order; the checkpoint moves only once a batch is acknowledged, so
//! a run stopped midway resumes after the last acknowledged batch and at
//! worst sends one batch twice (harmless, as for the relay).

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{clear_checkpoint, load_checkpoint, save_checkpoint, ReplayCheckpoint};
use crate::encode::encode;
use crate::history::{count_history, fetch_stored, HistoryFilter};
use crate::{provision_topics, Publisher, RelayConfig, RelayError, Topics};

/// What to republish where.
#[derive(Debug, Clone)]
pub struct RepublishPlan {
    pub filter: HistoryFilter,
    /// The topic of each aggregate type (the relay's, or a new version).
    pub topics: Topics,
    /// Events read and sent at once.
    pub batch_size: u32,
}

impl RepublishPlan {
    /// The checkpoint's name: one republish at a time per database.
    pub const CHECKPOINT: &'static str = "republish";

    /// Everything that makes two runs the same run: a resumed run must
    /// have been started with these.
    pub fn options(&self) -> String {
        format!(
            "types={:?} aggregate={:?} from={} topics={}",
            self.filter.aggregate_types,
            self.filter.aggregate_id,
            self.filter.from_position,
            self.topics.all().join(",")
        )
    }
}

/// Where a republish starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepublishStart {
    /// Saved progress of an interrupted run with the same options.
    pub resumed: Option<ReplayCheckpoint>,
    /// Events left to send (as of now).
    pub remaining: u64,
}

/// How a republish ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepublishOutcome {
    /// Every matching event was acknowledged; `published` counts the whole
    /// run, resumed parts included.
    Finished { published: u64 },
    /// Stopped by the caller after `published` events; run again to resume.
    Interrupted { published: u64 },
}

/// Sends a plan's events.
pub struct Republisher {
    pool: PgPool,
    plan: RepublishPlan,
    relay: RelayConfig,
}

impl Republisher {
    /// `relay` gives the brokers and producer settings; its topics are
    /// replaced by the plan's.
    pub fn new(pool: PgPool, plan: RepublishPlan, relay: &RelayConfig) -> Self {
        let relay = RelayConfig {
            topics: plan.topics.clone(),
            ..relay.clone()
        };
        Self { pool, plan, relay }
    }

    /// Where a run would start and how much it would send; changes nothing
    /// (so it is also the dry run).
    pub async fn start(&self) -> Result<RepublishStart, RelayError> {
        let mut conn = self.pool.acquire().await?;
        let resumed =
            load_checkpoint(&mut conn, RepublishPlan::CHECKPOINT, &self.plan.options()).await?;
        let after = resumed.as_ref().map(|c| c.cursor).unwrap_or_default();
        let remaining = count_history(&mut conn, after, &self.plan.filter).await?;
        Ok(RepublishStart { resumed, remaining })
    }

    /// Sends every matching event from `start`, batch by batch, calling
    /// `progress` with the events sent so far; stops between batches once
    /// `stop` is cancelled.
    pub async fn run(
        &self,
        start: &RepublishStart,
        stop: &CancellationToken,
        mut progress: impl FnMut(u64),
    ) -> Result<RepublishOutcome, RelayError> {
        provision_topics(&self.relay).await?;
        let publisher = Publisher::new(&self.relay)?;
        publisher.warm_up().await?;
        let options = self.plan.options();
        let mut checkpoint = start.resumed.clone().unwrap_or(ReplayCheckpoint {
            cursor: crate::Cursor::default(),
            done: 0,
        });
        let mut conn = self.pool.acquire().await?;
        loop {
            if stop.is_cancelled() {
                return Ok(RepublishOutcome::Interrupted {
                    published: checkpoint.done,
                });
            }
            let events = fetch_stored(
                &mut conn,
                checkpoint.cursor,
                &self.plan.filter,
                i64::from(self.plan.batch_size.max(1)),
            )
            .await?;
            let Some(last) = events.last() else {
                clear_checkpoint(&mut conn, RepublishPlan::CHECKPOINT).await?;
                return Ok(RepublishOutcome::Finished {
                    published: checkpoint.done,
                });
            };
            let messages = events
                .iter()
                .map(|event| encode(event, &self.plan.topics))
                .collect::<Result<Vec<_>, _>>()?;
            publisher.publish_all(&messages).await?;
            checkpoint = ReplayCheckpoint {
                cursor: last.cursor(),
                done: checkpoint.done + u64::try_from(events.len()).unwrap_or_default(),
            };
            save_checkpoint(&mut conn, RepublishPlan::CHECKPOINT, &options, &checkpoint).await?;
            progress(checkpoint.done);
        }
    }
}

/// `topic` moved to topic version `suffix`: `ticketing.orders.v1` with
/// `v2` gives `ticketing.orders.v2`; a name without a version gets the
/// suffix appended.
pub fn topic_version(topic: &str, suffix: &str) -> String {
    let base = match topic.rsplit_once('.') {
        Some((base, last))
            if last.len() > 1
                && last.starts_with('v')
                && last[1..].chars().all(|c| c.is_ascii_digit()) =>
        {
            base
        }
        _ => topic,
    };
    format!("{base}.{suffix}")
}

#[cfg(test)]
mod tests {
    use super::topic_version;

    #[test]
    fn a_topic_version_replaces_the_last_one() {
        assert_eq!(
            topic_version("ticketing.orders.v1", "v2"),
            "ticketing.orders.v2"
        );
        assert_eq!(topic_version("test.orders.v12", "v13"), "test.orders.v13");
        assert_eq!(topic_version("orders", "v2"), "orders.v2");
        assert_eq!(topic_version("orders.vip", "v2"), "orders.vip.v2");
    }
}
