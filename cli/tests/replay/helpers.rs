//! A live system in this process (relay, projector, gateway) on a fresh
//! database and fresh topics, fed a mixed workload through the real write
//! path.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;
use ticketing_aggregates::{
    Money, Order, OrderCommand, OrderTicket, Payment, PaymentCommand, Ticket, TicketCommand, Title,
};
use ticketing_eventstore::{CommandExecutor, CommandMetadata, ScratchDatabase};
use ticketing_projections::{ProjectionConfig, ProjectionMetrics, Projector};
use ticketing_relay::{Relay, RelayConfig, Topics};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub(crate) use ticketing_testkit::{brokers, eventually};

pub(crate) struct Live {
    pub(crate) database: Option<ScratchDatabase>,
    pub(crate) pool: PgPool,
    pub(crate) relay: RelayConfig,
    pub(crate) projector: Arc<ProjectionMetrics>,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Live {
    pub(crate) async fn start() -> anyhow::Result<Live> {
        let database = ScratchDatabase::create("replay", 20).await?;
        let pool = database.pool().clone();
        let suffix = Uuid::new_v4().simple().to_string();
        let relay = RelayConfig {
            brokers: brokers(),
            topics: Topics {
                tickets: format!("test-replay-{suffix}.tickets.v1"),
                orders: format!("test-replay-{suffix}.orders.v1"),
                payments: format!("test-replay-{suffix}.payments.v1"),
            },
            partitions: 3,
            ..RelayConfig::default()
        };
        let group_id = format!("test-replay-{suffix}");
        let projection = ProjectionConfig {
            brokers: relay.brokers.clone(),
            topics: relay.topics.clone(),
            group_id,
            partitions: 3,
            ..ProjectionConfig::default()
        };
        let shutdown = CancellationToken::new();
        let projector = Projector::new(pool.clone(), projection)?;
        let metrics = projector.metrics();
        let mut tasks = vec![tokio::spawn(
            Relay::new(pool.clone(), relay.clone()).run_until_stopped(shutdown.clone()),
        )];
        let stop = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(error) = projector.run_until_stopped(stop).await {
                panic!("projector failed: {error}");
            }
        }));
        Ok(Live {
            database: Some(database),
            pool,
            relay,
            projector: metrics,
            shutdown,
            tasks,
        })
    }

    pub(crate) fn url(&self) -> &str {
        self.database.as_ref().map_or("", |d| d.url())
    }

    /// Tickets created and some updated; orders placed on most, some of
    /// them cancelled (ticket released), some paid (payment succeeded and
    /// order completed), some with a failed payment. Returns the events.
    pub(crate) async fn mixed_workload(&self, tickets: usize) -> anyhow::Result<i64> {
        Live::workload_on(self).run(tickets).await?;
        self.events().await
    }

    /// A workload that can run in a task of its own.
    pub(crate) fn workload_on(live: &Live) -> Workload {
        Workload {
            pool: live.pool.clone(),
        }
    }
}

pub(crate) struct Workload {
    pool: PgPool,
}

impl Workload {
    pub(crate) async fn run(&self, tickets: usize) -> anyhow::Result<()> {
        let ticket = CommandExecutor::<Ticket>::new(self.pool.clone(), ());
        let order = CommandExecutor::<Order>::new(self.pool.clone(), ());
        let payment = CommandExecutor::<Payment>::new(self.pool.clone(), ());
        let meta = CommandMetadata::default();
        for n in 0..tickets {
            let id = Uuid::new_v4().to_string();
            let seller = format!("seller-{}", n % 5);
            let price = 1_000 + i64::try_from(n)?;
            let _ = ticket
                .execute(
                    &id,
                    TicketCommand::Create {
                        title: Title::parse(&format!("Ticket {n}"))?,
                        price: Money::from_cents(price)?,
                        user_id: seller.clone(),
                    },
                    &meta,
                )
                .await?;
            if n % 3 == 0 {
                let _ = ticket
                    .execute(
                        &id,
                        TicketCommand::Update {
                            title: Title::parse(&format!("Ticket {n}, updated"))?,
                            price: Money::from_cents(price + 1)?,
                            user_id: seller.clone(),
                        },
                        &meta,
                    )
                    .await?;
            }
            if n % 4 == 3 {
                continue;
            }
            let order_id = Uuid::new_v4().to_string();
            let buyer = format!("buyer-{}", n % 7);
            let expires_at = Utc::now() + chrono::Duration::minutes(15);
            let _ = ticket
                .execute(
                    &id,
                    TicketCommand::Reserve {
                        order_id: order_id.clone(),
                        expires_at,
                    },
                    &meta,
                )
                .await?;
            let _ = order
                .execute(
                    &order_id,
                    OrderCommand::Place {
                        user_id: buyer.clone(),
                        ticket: OrderTicket {
                            id: id.clone(),
                            title: format!("Ticket {n}"),
                            price_cents: price,
                            version: 1,
                        },
                        expires_at,
                    },
                    &meta,
                )
                .await?;
            match n % 4 {
                0 => {
                    let _ = order
                        .execute(
                            &order_id,
                            OrderCommand::Cancel {
                                user_id: buyer.clone(),
                            },
                            &meta,
                        )
                        .await?;
                    let _ = ticket
                        .execute(&id, TicketCommand::Release { order_id }, &meta)
                        .await?;
                }
                1 => {
                    let payment_id = Uuid::new_v4().to_string();
                    let _ = payment
                        .execute(
                            &payment_id,
                            PaymentCommand::Request {
                                order_id: order_id.clone(),
                                user_id: buyer.clone(),
                                amount: Money::from_cents(price)?,
                            },
                            &meta,
                        )
                        .await?;
                    let _ = payment
                        .execute(
                            &payment_id,
                            PaymentCommand::Succeed {
                                stripe_id: format!("ch_{n}"),
                            },
                            &meta,
                        )
                        .await?;
                    let _ = order
                        .execute(&order_id, OrderCommand::Complete { payment_id }, &meta)
                        .await?;
                }
                _ => {
                    let payment_id = Uuid::new_v4().to_string();
                    let _ = payment
                        .execute(
                            &payment_id,
                            PaymentCommand::Request {
                                order_id,
                                user_id: buyer,
                                amount: Money::from_cents(price)?,
                            },
                            &meta,
                        )
                        .await?;
                    let _ = payment
                        .execute(
                            &payment_id,
                            PaymentCommand::Fail {
                                reason: "card declined".to_owned(),
                            },
                            &meta,
                        )
                        .await?;
                }
            }
        }
        Ok(())
    }
}

impl Live {
    pub(crate) async fn events(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Sum of the checkpoints over every view: events applied once each.
    pub(crate) async fn applied(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT ((SELECT coalesce(sum(last_sequence), 0) FROM ticket_views) \
                  + (SELECT coalesce(sum(last_sequence), 0) FROM order_views) \
                  + (SELECT coalesce(sum(last_sequence), 0) FROM payment_views))::bigint",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Waits until the live read models hold every stored event.
    pub(crate) async fn caught_up(&self) -> anyhow::Result<()> {
        eventually(Duration::from_secs(60), || async {
            Ok(self.applied().await? == self.events().await?)
        })
        .await
    }

    /// Every read model, row by row, without `updated_at` (the only column
    /// allowed to differ between two projections of the same events).
    pub(crate) async fn read_models(&self) -> anyhow::Result<Vec<String>> {
        let mut rows = Vec::new();
        for table in ["ticket_views", "order_views", "payment_views"] {
            let sql = format!(
                "SELECT '{table} ' || (to_jsonb(t) - 'updated_at')::text FROM {table} t ORDER BY id"
            );
            rows.extend(
                sqlx::query_scalar::<_, String>(&sql)
                    .fetch_all(&self.pool)
                    .await?,
            );
        }
        Ok(rows)
    }

    /// Indexes and constraints of the read models, by name and definition.
    pub(crate) async fn schema(&self) -> anyhow::Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT tablename || ' ' || indexname || ' ' || indexdef FROM pg_indexes \
             WHERE schemaname = current_schema() \
               AND tablename IN ('ticket_views', 'order_views', 'payment_views') \
             ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Stops the relay and the projector, keeping the database.
    pub(crate) async fn stop_workers(&mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        for task in self.tasks.drain(..) {
            tokio::time::timeout(Duration::from_secs(20), task).await??;
        }
        Ok(())
    }

    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        self.stop_workers().await?;
        if let Some(database) = self.database.take() {
            database.remove().await?;
        }
        Ok(())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(database) = self.database.take() {
            database.remove_blocking();
        }
    }
}
