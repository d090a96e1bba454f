//! No ticket stays reserved by an order that ended or never existed.

use ticketing_aggregates::OrderStatus;
use ticketing_eventstore::CommandMetadata;

use crate::commands::Commands;
use crate::order_expiry::release;
use crate::outcome::{SagaError, TaskOutcome};

/// Runs after a reservation's deadline: frees the ticket if the order that
/// holds it was never recorded (the gateway died between reserving the
/// ticket and placing the order) or has ended. A live order keeps it: its
/// own expiry timer, written with the order, decides.
pub async fn check(
    commands: &Commands,
    ticket_id: &str,
    order_id: &str,
    metadata: &CommandMetadata,
) -> Result<TaskOutcome, SagaError> {
    let order = commands
        .orders
        .load(order_id)
        .await
        .map_err(SagaError::Order)?;
    let ended = !order.exists() || order.status() == OrderStatus::Cancelled;
    if ended {
        tracing::info!(
            ticket_id,
            order_id,
            "releasing a reservation whose order ended or never existed"
        );
        release(commands, ticket_id, order_id, metadata).await?;
    }
    Ok(TaskOutcome::Done)
}
