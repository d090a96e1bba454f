//! Command load through the real write path (CommandExecutor, postgres-es).

use chrono::{Duration as ChronoDuration, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};
use sqlx::PgPool;
use ticketing_aggregates::{Money, Ticket, TicketCommand, Title};
use ticketing_eventstore::{CommandExecutor, CommandMetadata};
use uuid::Uuid;

/// The `index`-th command of a ticket's life: create, then update, reserve
/// and release in turn, so that every command commits exactly one event.
fn command(index: usize) -> anyhow::Result<TicketCommand> {
    let title = Title::parse(&format!("ticket edition {index}"))?;
    let price = Money::from_cents(100 + i64::try_from(index)?)?;
    let order = |n: usize| format!("order-{n}");
    Ok(match (index, index.saturating_sub(1) % 3) {
        (0, _) => TicketCommand::Create {
            title,
            price,
            user_id: "seller".to_owned(),
        },
        (_, 0) => TicketCommand::Update {
            title,
            price,
            user_id: "seller".to_owned(),
        },
        (_, 1) => TicketCommand::Reserve {
            order_id: order(index),
            expires_at: Utc::now() + ChronoDuration::minutes(15),
        },
        _ => TicketCommand::Release {
            order_id: order(index - 1),
        },
    })
}

fn metadata(ticket: &str, index: usize) -> CommandMetadata {
    CommandMetadata {
        correlation_id: format!("corr-{ticket}"),
        causation_id: format!("cmd-{ticket}-{index}"),
        user_id: Some("seller".to_owned()),
        traceparent: Some(format!(
            "00-{}-{:016x}-01",
            Uuid::new_v4().simple(),
            index + 1
        )),
    }
}

/// Runs `per_ticket` commands on each of `tickets` new tickets, up to
/// `concurrency` tickets at a time (one ticket's commands in order), and
/// returns how many commands succeeded (each commits one event).
pub(crate) async fn ticket_commands(
    pool: &PgPool,
    tickets: usize,
    per_ticket: usize,
    concurrency: usize,
) -> anyhow::Result<usize> {
    let executor = CommandExecutor::<Ticket>::new(pool.clone(), ());
    let executor = &executor;
    stream::iter(0..tickets)
        .map(|_| async move {
            let id = Uuid::new_v4().to_string();
            for index in 0..per_ticket {
                let _ = executor
                    .execute(&id, command(index)?, &metadata(&id, index))
                    .await?;
            }
            anyhow::Ok(per_ticket)
        })
        .buffer_unordered(concurrency)
        .try_fold(0, |total, done| async move { Ok(total + done) })
        .await
}

/// Runs the commands `from..from + count` of each ticket in `ids` (tickets
/// created by [`ticket_commands`] with `from` commands), one ticket at a
/// time.
pub(crate) async fn continue_tickets(
    pool: &PgPool,
    ids: &[String],
    from: usize,
    count: usize,
) -> anyhow::Result<()> {
    let executor = CommandExecutor::<Ticket>::new(pool.clone(), ());
    for id in ids {
        for index in from..from + count {
            let _ = executor
                .execute(id, command(index)?, &metadata(id, index))
                .await?;
        }
    }
    Ok(())
}
