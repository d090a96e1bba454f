//! One projection step: a batch of messages into the read models.

use std::time::Instant;

use rdkafka::message::{Message, OwnedMessage};

use crate::apply::{apply_event, Applied};
use crate::dead_letter::error_chain;
use crate::decode::{DecodeError, ProjectedEvent};
use crate::{ProjectionError, Projector};

/// A consumed message and when it was taken from the consumer.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub message: OwnedMessage,
    pub received_at: Instant,
}

impl Incoming {
    pub fn new(message: OwnedMessage) -> Self {
        Self {
            message,
            received_at: Instant::now(),
        }
    }
}

/// What one call to [`Projector::try_project_batch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectOutcome {
    /// Every message of the batch is in the read models or on a
    /// dead-letter topic: its offsets may be committed.
    Projected(BatchReport),
    /// There was nothing to project.
    Empty,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchReport {
    pub applied: usize,
    pub duplicates: usize,
    /// Events read from the event store to fill gaps.
    pub healed: usize,
    pub dead_lettered: usize,
}

impl BatchReport {
    fn count(&mut self, applied: Applied) {
        match applied {
            Applied::Applied => self.applied += 1,
            Applied::Duplicate => self.duplicates += 1,
            Applied::Healed(n) => {
                self.applied += 1;
                self.healed += n;
            }
        }
    }
}

impl Projector {
    /// Projects `batch`, in order, and dead-letters what cannot be.
    ///
    /// The batch is first applied in one transaction. Should an event fail,
    /// that transaction is rolled back and the events are applied one per
    /// transaction instead, each retried with backoff up to the configured
    /// bound and then dead-lettered, so one poison message costs only
    /// itself. An error returned here is transient (the database or the
    /// broker is unreachable): nothing was skipped and the whole batch may
    /// be projected again, its applied events being duplicates by then.
    #[tracing::instrument(skip_all, fields(messages = batch.len()))]
    pub async fn try_project_batch(
        &self,
        batch: &[Incoming],
    ) -> Result<ProjectOutcome, ProjectionError> {
        if batch.is_empty() {
            return Ok(ProjectOutcome::Empty);
        }
        let topics = &self.config().topics;
        let decoded: Vec<Result<ProjectedEvent, DecodeError>> = batch
            .iter()
            .map(|incoming| {
                let message = &incoming.message;
                ProjectedEvent::from_message(topics, message.topic(), message.payload())
            })
            .collect();
        let mut report = BatchReport::default();
        match self.apply_together(&decoded).await {
            Ok(outcomes) => outcomes.into_iter().for_each(|a| report.count(a)),
            Err(error) if error.is_transient() => return Err(error),
            Err(error) => {
                tracing::debug!(error.message = %error, "batch failed; applying its events one by one");
                self.apply_one_by_one(batch, &decoded, &mut report).await?;
            }
        }
        // Decoding is pure: retrying it would fail the same way.
        for (incoming, decoded) in batch.iter().zip(&decoded) {
            if let Err(error) = decoded {
                self.dead_letters().send(&incoming.message, error).await?;
                self.metrics_ref().record_dead_letter();
                report.dead_lettered += 1;
            }
        }
        let now = Instant::now();
        self.metrics_ref()
            .record_processing(batch.iter().map(|i| now - i.received_at));
        Ok(ProjectOutcome::Projected(report))
    }

    /// Every decoded event in one transaction; all or nothing.
    async fn apply_together(
        &self,
        decoded: &[Result<ProjectedEvent, DecodeError>],
    ) -> Result<Vec<Applied>, ProjectionError> {
        let mut tx = self.pool().begin().await?;
        let mut outcomes = Vec::with_capacity(decoded.len());
        for event in decoded.iter().flatten() {
            outcomes.push(apply_event(&mut tx, event).await?);
        }
        tx.commit().await?;
        for applied in &outcomes {
            self.record(*applied);
        }
        Ok(outcomes)
    }

    async fn apply_one_by_one(
        &self,
        batch: &[Incoming],
        decoded: &[Result<ProjectedEvent, DecodeError>],
        report: &mut BatchReport,
    ) -> Result<(), ProjectionError> {
        for (incoming, event) in batch.iter().zip(decoded) {
            let Ok(event) = event else { continue };
            match self.apply_with_retries(event).await {
                Ok(applied) => report.count(applied),
                Err(error) if error.is_transient() => return Err(error),
                Err(error) => {
                    self.dead_letters().send(&incoming.message, &error).await?;
                    self.metrics_ref().record_dead_letter();
                    report.dead_lettered += 1;
                }
            }
        }
        Ok(())
    }

    /// One event in its own transaction, retried with exponential backoff;
    /// the last error once the retries are spent. Transient errors return
    /// at once: the caller retries those without bound.
    async fn apply_with_retries(&self, event: &ProjectedEvent) -> Result<Applied, ProjectionError> {
        let mut attempt = 0;
        loop {
            let result = async {
                let mut tx = self.pool().begin().await?;
                let applied = apply_event(&mut tx, event).await?;
                tx.commit().await?;
                Ok::<_, ProjectionError>(applied)
            }
            .await;
            match result {
                Ok(applied) => {
                    self.record(applied);
                    return Ok(applied);
                }
                Err(error) if error.is_transient() || attempt >= self.config().max_retries => {
                    return Err(error)
                }
                Err(error) => {
                    attempt += 1;
                    self.metrics_ref().record_retry();
                    tracing::warn!(
                        attempt,
                        error.cause_chain = %error_chain(&error),
                        aggregate_id = event.aggregate_id(),
                        sequence = event.sequence(),
                        "event not applied; retrying"
                    );
                    tokio::time::sleep(self.config().retry_delay(attempt)).await;
                }
            }
        }
    }

    fn record(&self, applied: Applied) {
        match applied {
            Applied::Applied => self.metrics_ref().record_applied(0),
            Applied::Healed(n) => self.metrics_ref().record_applied(n),
            Applied::Duplicate => self.metrics_ref().record_duplicate(),
        }
    }
}
