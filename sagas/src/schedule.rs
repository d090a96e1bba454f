//! Which events call for a timer, written in the events' own transaction.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use cqrs_es::EventEnvelope;
use sqlx::PgConnection;
use ticketing_aggregates::{Order, OrderEvent, Ticket, TicketEvent};
use ticketing_eventstore::CommitEffect;

use crate::timers::{self, NewTimer, TimerTask};

/// Order events → timers: an expiry at the order's deadline when it is
/// placed, and a ticket release as soon as it ends.
pub struct OrderTimers;

/// Ticket events → timers: a reservation check shortly after the
/// reservation's deadline, in case its order was never recorded.
pub struct TicketTimers {
    /// How long after the deadline the check runs; the order's own expiry
    /// (at the deadline) normally releases the ticket first.
    pub grace: Duration,
}

/// The timers one order event calls for.
#[must_use]
pub fn order_timers(
    order_id: &str,
    event: &OrderEvent,
    now: DateTime<Utc>,
) -> Vec<(TimerTask, DateTime<Utc>)> {
    match event {
        OrderEvent::OrderPlaced { expires_at, .. } => vec![(
            TimerTask::OrderExpiry {
                order_id: order_id.to_owned(),
            },
            *expires_at,
        )],
        OrderEvent::OrderCancelled { ticket_id } | OrderEvent::OrderExpired { ticket_id } => {
            vec![(
                TimerTask::ReleaseTicket {
                    ticket_id: ticket_id.clone(),
                    order_id: order_id.to_owned(),
                },
                now,
            )]
        }
        OrderEvent::OrderPaymentStarted { .. }
        | OrderEvent::OrderPaymentFailed { .. }
        | OrderEvent::OrderCompleted { .. } => Vec::new(),
    }
}

/// The timers one ticket event calls for.
#[must_use]
pub fn ticket_timers(
    ticket_id: &str,
    event: &TicketEvent,
    grace: Duration,
) -> Vec<(TimerTask, DateTime<Utc>)> {
    match event {
        TicketEvent::TicketReserved {
            order_id,
            expires_at,
        } => vec![(
            TimerTask::ReservationCheck {
                ticket_id: ticket_id.to_owned(),
                order_id: order_id.clone(),
            },
            *expires_at + grace,
        )],
        _ => Vec::new(),
    }
}

async fn write_all<A: cqrs_es::Aggregate>(
    tx: &mut PgConnection,
    envelope: &EventEnvelope<A>,
    wanted: Vec<(TimerTask, DateTime<Utc>)>,
) -> Result<(), sqlx::Error> {
    for (task, due_at) in wanted {
        let timer = NewTimer {
            task,
            due_at,
            correlation_id: envelope.metadata.get("correlation_id").cloned(),
            traceparent: envelope.metadata.get("traceparent").cloned(),
        };
        timers::schedule(tx, &timer).await?;
    }
    Ok(())
}

#[async_trait]
impl CommitEffect<Order> for OrderTimers {
    async fn write(
        &self,
        tx: &mut PgConnection,
        events: &[EventEnvelope<Order>],
    ) -> Result<(), sqlx::Error> {
        let now = Utc::now();
        for envelope in events {
            let wanted = order_timers(&envelope.aggregate_id, &envelope.payload, now);
            write_all(tx, envelope, wanted).await?;
        }
        Ok(())
    }

    fn writes_for(&self, events: &[EventEnvelope<Order>]) -> bool {
        let now = Utc::now();
        events
            .iter()
            .any(|e| !order_timers(&e.aggregate_id, &e.payload, now).is_empty())
    }
}

#[async_trait]
impl CommitEffect<Ticket> for TicketTimers {
    async fn write(
        &self,
        tx: &mut PgConnection,
        events: &[EventEnvelope<Ticket>],
    ) -> Result<(), sqlx::Error> {
        for envelope in events {
            let wanted = ticket_timers(&envelope.aggregate_id, &envelope.payload, self.grace);
            write_all(tx, envelope, wanted).await?;
        }
        Ok(())
    }

    fn writes_for(&self, events: &[EventEnvelope<Ticket>]) -> bool {
        events
            .iter()
            .any(|e| !ticket_timers(&e.aggregate_id, &e.payload, self.grace).is_empty())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use chrono::TimeZone;
    use ticketing_aggregates::OrderTicket;

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 1, 12, minute, 0).unwrap()
    }

    #[test]
    fn a_placed_order_expires_at_its_deadline() {
        let placed = OrderEvent::OrderPlaced {
            user_id: "u".into(),
            ticket: OrderTicket {
                id: "t".into(),
                title: "x".into(),
                price_cents: 100,
                version: 0,
            },
            expires_at: at(15),
        };
        assert_eq!(
            order_timers("o", &placed, at(0)),
            vec![(
                TimerTask::OrderExpiry {
                    order_id: "o".into()
                },
                at(15)
            )]
        );
    }

    #[test]
    fn an_ended_order_releases_its_ticket_now() {
        for ended in [
            OrderEvent::OrderCancelled {
                ticket_id: "t".into(),
            },
            OrderEvent::OrderExpired {
                ticket_id: "t".into(),
            },
        ] {
            assert_eq!(
                order_timers("o", &ended, at(3)),
                vec![(
                    TimerTask::ReleaseTicket {
                        ticket_id: "t".into(),
                        order_id: "o".into()
                    },
                    at(3)
                )]
            );
        }
        let paid = OrderEvent::OrderCompleted {
            payment_id: "p".into(),
        };
        assert!(order_timers("o", &paid, at(3)).is_empty());
    }

    #[test]
    fn a_reservation_is_checked_after_its_deadline() {
        let reserved = TicketEvent::TicketReserved {
            order_id: "o".into(),
            expires_at: at(15),
        };
        assert_eq!(
            ticket_timers("t", &reserved, Duration::minutes(1)),
            vec![(
                TimerTask::ReservationCheck {
                    ticket_id: "t".into(),
                    order_id: "o".into()
                },
                at(16)
            )]
        );
    }

    fn envelope(payload: TicketEvent) -> EventEnvelope<Ticket> {
        EventEnvelope {
            aggregate_id: "t".into(),
            sequence: 1,
            payload,
            metadata: std::collections::HashMap::new(),
        }
    }

    #[test]
    fn only_a_reservation_makes_the_ticket_timers_write() {
        let timers = TicketTimers {
            grace: Duration::minutes(1),
        };
        let updated = envelope(TicketEvent::TicketUpdated {
            title: "x".into(),
            price_cents: 100,
        });
        let reserved = envelope(TicketEvent::TicketReserved {
            order_id: "o".into(),
            expires_at: at(15),
        });
        assert!(!timers.writes_for(std::slice::from_ref(&updated)));
        assert!(timers.writes_for(&[updated, reserved]));
    }
}
