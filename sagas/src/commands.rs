//! The command executors every role uses, with the saga timers attached so
//! that no writer can commit an event without the timer it calls for.

use chrono::Duration;
use sqlx::PgPool;
use std::sync::Arc;
use ticketing_aggregates::{Order, Payment, Ticket};
use ticketing_eventstore::{CommandExecutor, GroupCommit};

use crate::schedule::{OrderTimers, TicketTimers};

/// How long after a reservation's deadline it is checked by default.
pub const DEFAULT_RESERVATION_GRACE: Duration = Duration::seconds(30);

/// One executor per aggregate.
pub struct Commands {
    pub tickets: CommandExecutor<Ticket>,
    pub orders: CommandExecutor<Order>,
    pub payments: CommandExecutor<Payment>,
}

impl Commands {
    #[must_use]
    pub fn new(pool: &PgPool, reservation_grace: Duration) -> Self {
        Self {
            tickets: CommandExecutor::new(pool.clone(), ()).with_effect(Arc::new(TicketTimers {
                grace: reservation_grace,
            })),
            orders: CommandExecutor::new(pool.clone(), ()).with_effect(Arc::new(OrderTimers)),
            payments: CommandExecutor::new(pool.clone(), ()),
        }
    }

    /// How every executor commits: see [`GroupCommit`] (`None`: each command
    /// in its own transaction).
    #[must_use]
    pub fn with_group_commit(self, group_commit: Option<GroupCommit>) -> Self {
        Self {
            tickets: self.tickets.with_group_commit(group_commit),
            orders: self.orders.with_group_commit(group_commit),
            payments: self.payments.with_group_commit(group_commit),
        }
    }
}
