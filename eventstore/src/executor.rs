use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, AggregateContext, AggregateError, EventEnvelope, EventStore};
use postgres_es::PostgresEventRepository;
use rand::Rng;
use sqlx::PgPool;
use std::time::Duration;
use ticketing_aggregates::upcasting::upcasters_for;

use crate::CommandMetadata;

/// The state a command produced, and the events it committed (empty when the
/// command was an accepted no-op, such as a repeated reservation).
#[derive(Debug)]
pub struct Executed<A: Aggregate> {
    pub aggregate: A,
    pub events: Vec<EventEnvelope<A>>,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error + 'static> {
    /// The aggregate refused the command: a business rule, reported as is.
    #[error(transparent)]
    Rejected(E),
    /// Other writers kept committing to this aggregate first, every attempt.
    #[error("the {aggregate_type} changed concurrently {attempts} times in a row; try again")]
    Contended {
        aggregate_type: &'static str,
        attempts: u32,
    },
    #[error("event store failure on {aggregate_type} {aggregate_id}")]
    Store {
        aggregate_type: &'static str,
        aggregate_id: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Runs commands against one aggregate type: load, decide, commit, and on an
/// optimistic-lock conflict load the new state and decide again.
pub struct CommandExecutor<A: Aggregate> {
    store: PersistedEventStore<PostgresEventRepository, A>,
    services: A::Services,
    max_attempts: u32,
}

impl<A> CommandExecutor<A>
where
    A: Aggregate + Clone + 'static,
    A::Command: Clone,
    A::Error: 'static,
{
    /// Conflicting writers are rare (one aggregate, same instant); a handful
    /// of attempts absorbs bursts like many buyers racing for one ticket.
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 20;

    pub fn new(pool: PgPool, services: A::Services) -> Self {
        let repository = PostgresEventRepository::new(pool);
        Self {
            // Events stored at an older version load through the aggregate's
            // upcasters (ticketing_aggregates::upcasting).
            store: PersistedEventStore::new_event_store(repository)
                .with_upcasters(upcasters_for(A::TYPE)),
            services,
            max_attempts: Self::DEFAULT_MAX_ATTEMPTS,
        }
    }

    #[must_use]
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts.max(1);
        self
    }

    /// Executes `command` on the aggregate `aggregate_id`, retrying on
    /// concurrent modification, and returns the resulting state.
    #[tracing::instrument(skip(self, command, metadata), fields(aggregate_type = A::TYPE))]
    pub async fn execute(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: &CommandMetadata,
    ) -> Result<Executed<A>, CommandError<A::Error>> {
        for attempt in 1..=self.max_attempts {
            match self
                .try_execute(aggregate_id, command.clone(), metadata)
                .await
            {
                Err(AggregateError::AggregateConflict) => {
                    tracing::debug!(
                        attempt,
                        aggregate_id,
                        "optimistic-lock conflict, re-running"
                    );
                    backoff(attempt).await;
                }
                Err(AggregateError::UserError(rejection)) => {
                    return Err(CommandError::Rejected(rejection))
                }
                Err(other) => return Err(store_error::<A>(aggregate_id, other)),
                Ok(executed) => return Ok(executed),
            }
        }
        Err(CommandError::Contended {
            aggregate_type: A::TYPE,
            attempts: self.max_attempts,
        })
    }

    /// Loads the current state without changing anything.
    pub async fn load(&self, aggregate_id: &str) -> Result<A, CommandError<A::Error>> {
        let mut context = self
            .store
            .load_aggregate(aggregate_id)
            .await
            .map_err(|e| store_error::<A>(aggregate_id, e))?;
        Ok(context.aggregate().clone())
    }

    async fn try_execute(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: &CommandMetadata,
    ) -> Result<Executed<A>, AggregateError<A::Error>> {
        let mut context = self.store.load_aggregate(aggregate_id).await?;
        let sink = EventSink::default();
        context
            .aggregate()
            .handle(command, &self.services, &sink)
            .await
            .map_err(AggregateError::UserError)?;
        let aggregate = context.aggregate().clone();
        let new_events = sink.collect().await;
        if new_events.is_empty() {
            return Ok(Executed {
                aggregate,
                events: Vec::new(),
            });
        }
        let events = self
            .store
            .commit(new_events, context, metadata.to_map())
            .await?;
        Ok(Executed { aggregate, events })
    }
}

/// A short random pause, so writers that collided do not collide again in
/// lockstep.
async fn backoff(attempt: u32) {
    let ceiling_micros = 500 * u64::from(attempt.min(10));
    let pause = rand::thread_rng().gen_range(0..=ceiling_micros);
    tokio::time::sleep(Duration::from_micros(pause)).await;
}

fn store_error<A: Aggregate>(
    aggregate_id: &str,
    error: AggregateError<A::Error>,
) -> CommandError<A::Error> {
    let source: Box<dyn std::error::Error + Send + Sync> = match error {
        AggregateError::DatabaseConnectionError(e)
        | AggregateError::DeserializationError(e)
        | AggregateError::UnexpectedError(e) => e,
        // Handled by the caller; kept total so a new variant is still reported.
        AggregateError::UserError(e) => e.to_string().into(),
        AggregateError::AggregateConflict => "unexpected optimistic-lock conflict".into(),
    };
    CommandError::Store {
        aggregate_type: A::TYPE,
        aggregate_id: aggregate_id.to_owned(),
        source,
    }
}
