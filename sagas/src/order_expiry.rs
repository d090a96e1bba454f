//! Firing an order's expiry timer.

use chrono::{DateTime, Utc};
use ticketing_aggregates::{OrderCommand, OrderError, TicketCommand};
use ticketing_eventstore::{CommandError, CommandMetadata};

use crate::commands::Commands;
use crate::outcome::{SagaError, TaskOutcome};

/// Expires the order (a no-op once paid or cancelled) and frees its ticket.
/// An order whose payment is in flight is looked at again after
/// `payment_wait`: the payment settles it one way or the other first.
pub async fn fire(
    commands: &Commands,
    order_id: &str,
    now: DateTime<Utc>,
    payment_wait: chrono::Duration,
    metadata: &CommandMetadata,
) -> Result<TaskOutcome, SagaError> {
    let expired = match commands
        .orders
        .execute(order_id, OrderCommand::Expire { now }, metadata)
        .await
    {
        Ok(executed) => executed,
        Err(CommandError::Rejected(OrderError::PaymentInProgress)) => {
            return Ok(TaskOutcome::Deferred(now + payment_wait))
        }
        Err(CommandError::Rejected(OrderError::NotYetExpired)) => {
            // Another clock was ahead; fire again at the recorded deadline.
            let deadline = commands
                .orders
                .load(order_id)
                .await
                .map_err(SagaError::Order)?
                .expires_at()
                .unwrap_or(now);
            return Ok(TaskOutcome::Deferred(deadline));
        }
        Err(CommandError::Rejected(OrderError::NotFound)) => {
            tracing::warn!(order_id, "expiry timer of an unknown order");
            return Ok(TaskOutcome::Done);
        }
        Err(other) => return Err(SagaError::Order(other)),
    };
    // The release timer written with OrderExpired would do this too; doing
    // it now frees the ticket without waiting for the next poll.
    if let Some(ticket) = expired.aggregate.ticket() {
        if !expired.events.is_empty() {
            release(commands, &ticket.id, order_id, metadata).await?;
        }
    }
    Ok(TaskOutcome::Done)
}

/// Frees `ticket_id` if `order_id` holds it; a no-op otherwise.
pub async fn release(
    commands: &Commands,
    ticket_id: &str,
    order_id: &str,
    metadata: &CommandMetadata,
) -> Result<(), SagaError> {
    match commands
        .tickets
        .execute(
            ticket_id,
            TicketCommand::Release {
                order_id: order_id.to_owned(),
            },
            metadata,
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(CommandError::Rejected(rejection)) => {
            // Release only refuses a ticket that does not exist.
            tracing::warn!(ticket_id, order_id, %rejection, "nothing to release");
            Ok(())
        }
        Err(other) => Err(SagaError::Ticket(other)),
    }
}
