//! One projection step: a batch of messages into the read models.

use std::time::Instant;

use futures::future::join_all;
use rdkafka::message::{Headers, Message, OwnedMessage};
use ticketing_eventstore::trace_context;
use tracing::{Instrument, Span};

use crate::apply::{apply_event, apply_events_committed, Applied};
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

    /// The message's `traceparent` header: the span that published it.
    pub fn traceparent(&self) -> Option<&str> {
        self.message
            .headers()?
            .iter()
            .find(|header| header.key == trace_context::TRACEPARENT)
            .and_then(|header| std::str::from_utf8(header.value?).ok())
    }

    fn topic(&self) -> &str {
        self.message.topic()
    }

    /// The span projecting this message: a child of the span that published
    /// it, so the projection joins the trace of the command that wrote the
    /// event. It ends once the message is in the read models (or parked).
    fn span(&self) -> Span {
        let message = &self.message;
        let span = tracing::info_span!(
            "projection.apply",
            otel.name = %format_args!("{} process", message.topic()),
            otel.kind = "consumer",
            messaging.system = "kafka",
            messaging.operation.type = "process",
            messaging.destination.name = message.topic(),
            messaging.kafka.destination.partition = message.partition(),
            messaging.kafka.message.offset = message.offset(),
            outcome = tracing::field::Empty,
        );
        trace_context::child_of(span, self.traceparent())
    }
}

/// A message of a batch, decoded, with its span.
type Item<'a> = (
    &'a Incoming,
    &'a Result<ProjectedEvent, DecodeError>,
    &'a Span,
);

/// The batch split into `count` lanes by partition, each in batch order.
/// One aggregate's events are on one partition, so lanes share no
/// aggregate and may be applied concurrently, each on its own connection.
fn lanes<'a>(
    batch: &'a [Incoming],
    decoded: &'a [Result<ProjectedEvent, DecodeError>],
    spans: &'a [Span],
    count: usize,
) -> Vec<Vec<Item<'a>>> {
    let count = count.max(1);
    let mut lanes: Vec<Vec<Item<'a>>> = (0..count).map(|_| Vec::new()).collect();
    for ((incoming, event), span) in batch.iter().zip(decoded).zip(spans) {
        let lane = usize::try_from(incoming.message.partition()).unwrap_or_default() % count;
        lanes[lane].push((incoming, event, span));
    }
    lanes.retain(|lane| !lane.is_empty());
    lanes
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
    fn add(&mut self, other: BatchReport) {
        self.applied += other.applied;
        self.duplicates += other.duplicates;
        self.healed += other.healed;
        self.dead_lettered += other.dead_lettered;
    }

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
    /// The batch is split into lanes by partition ([`crate::ProjectionConfig`]'s
    /// `concurrency`), applied concurrently, each in one transaction. Should
    /// an event fail, its lane's transaction is rolled back and that lane's
    /// events are applied one per transaction instead, each retried with backoff up to the configured
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
        let spans: Vec<Span> = batch.iter().map(Incoming::span).collect();
        let lanes = lanes(batch, &decoded, &spans, self.config().concurrency);
        let mut report = BatchReport::default();
        let mut transient = None;
        for lane in join_all(lanes.iter().map(|lane| self.project_lane(lane))).await {
            match lane {
                Ok(lane) => report.add(lane),
                Err(error) => {
                    let _ = transient.get_or_insert(error);
                }
            }
        }
        if let Some(error) = transient {
            return Err(error);
        }
        // Decoding is pure: retrying it would fail the same way.
        for ((incoming, decoded), span) in batch.iter().zip(&decoded).zip(&spans) {
            if let Err(error) = decoded {
                self.metrics_ref()
                    .record_failure(incoming.topic(), "decode", 1);
                self.dead_letters()
                    .send(&incoming.message, error)
                    .instrument(span.clone())
                    .await?;
                self.metrics_ref().record_dead_letter(incoming.topic());
                span.record("outcome", "dead_lettered");
                report.dead_lettered += 1;
            }
        }
        let now = Instant::now();
        self.metrics_ref().record_processing(
            batch
                .iter()
                .map(|i| (i.topic(), now.saturating_duration_since(i.received_at))),
        );
        Ok(ProjectOutcome::Projected(report))
    }

    /// One lane of a batch: its events in one transaction, set-based
    /// ([`apply_events_committed`]), or, should that fail, one per
    /// transaction.
    async fn project_lane(&self, lane: &[Item<'_>]) -> Result<BatchReport, ProjectionError> {
        let mut report = BatchReport::default();
        match self.apply_together(lane).await {
            Ok(outcomes) => outcomes.into_iter().for_each(|a| report.count(a)),
            Err(error) if error.is_transient() => {
                for (incoming, _, _) in lane {
                    self.metrics_ref()
                        .record_failure(incoming.topic(), "transient", 1);
                }
                return Err(error);
            }
            Err(error) => {
                tracing::debug!(error.message = %error, "batch failed; applying its events one by one");
                self.apply_one_by_one(lane, &mut report).await?;
            }
        }
        Ok(report)
    }

    /// Every decoded event of `lane` together; all or nothing, but for the
    /// rows a racing worker leaves written ([`apply_events_committed`]).
    async fn apply_together(&self, lane: &[Item<'_>]) -> Result<Vec<Applied>, ProjectionError> {
        let mut applying = Vec::with_capacity(lane.len());
        let mut events = Vec::with_capacity(lane.len());
        for &(incoming, event, span) in lane {
            if let Ok(event) = event {
                applying.push((incoming, span));
                events.push(event);
            }
        }
        if events.is_empty() {
            return Ok(Vec::new());
        }
        // One write serves every message of the batch: its span links to
        // each message's span (as OpenTelemetry models batch processing).
        let write = tracing::info_span!(
            "projection.write",
            otel.name = "projection write",
            messages = events.len()
        );
        for (_, span) in &applying {
            trace_context::link_to(&write, trace_context::traceparent_of(span).as_deref());
        }
        let outcomes = async {
            let mut conn = self.pool().acquire().await?;
            apply_events_committed(&mut conn, &events).await
        }
        .instrument(write)
        .await?;
        Ok(applying
            .into_iter()
            .zip(events)
            .zip(outcomes)
            .map(|(((incoming, span), event), applied)| {
                self.record(incoming.topic(), event, span, applied);
                applied
            })
            .collect())
    }

    async fn apply_one_by_one(
        &self,
        lane: &[Item<'_>],
        report: &mut BatchReport,
    ) -> Result<(), ProjectionError> {
        for &(incoming, event, span) in lane {
            let Ok(event) = event else { continue };
            let topic = incoming.topic();
            match self
                .apply_with_retries(topic, event, span)
                .instrument(span.clone())
                .await
            {
                Ok(applied) => report.count(applied),
                Err(error) if error.is_transient() => return Err(error),
                Err(error) => {
                    self.dead_letters()
                        .send(&incoming.message, &error)
                        .instrument(span.clone())
                        .await?;
                    self.metrics_ref().record_dead_letter(topic);
                    span.record("outcome", "dead_lettered");
                    report.dead_lettered += 1;
                }
            }
        }
        Ok(())
    }

    /// One event in its own transaction, retried with exponential backoff;
    /// the last error once the retries are spent. Transient errors return
    /// at once: the caller retries those without bound.
    async fn apply_with_retries(
        &self,
        topic: &str,
        event: &ProjectedEvent,
        span: &Span,
    ) -> Result<Applied, ProjectionError> {
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
                    self.record(topic, event, span, applied);
                    return Ok(applied);
                }
                Err(error) if error.is_transient() => return Err(error),
                Err(error) if attempt >= self.config().max_retries => {
                    self.metrics_ref().record_failure(topic, "apply", 1);
                    return Err(error);
                }
                Err(error) => {
                    attempt += 1;
                    self.metrics_ref().record_failure(topic, "apply", 1);
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

    /// Counts a committed event; its command-to-read-model latency only
    /// when it changed the view (a duplicate's is not news).
    fn record(&self, topic: &str, event: &ProjectedEvent, span: &Span, applied: Applied) {
        let metrics = self.metrics_ref();
        let since_commit = || (chrono::Utc::now() - event.timestamp()).to_std().ok();
        match applied {
            Applied::Applied => metrics.record_applied(topic, 0, since_commit()),
            Applied::Healed(n) => metrics.record_applied(topic, n, since_commit()),
            Applied::Duplicate => metrics.record_duplicate(topic),
        }
        span.record(
            "outcome",
            match applied {
                Applied::Duplicate => "duplicate",
                Applied::Applied | Applied::Healed(_) => "applied",
            },
        );
    }
}
