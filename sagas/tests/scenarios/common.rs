use chrono::{DateTime, Duration, Utc};
use std::sync::Arc;
use ticketing_aggregates::{Money, OrderCommand, OrderTicket, TicketCommand, Title};
use ticketing_eventstore::{CommandMetadata, ScratchDatabase};
use ticketing_sagas::stripe_stand_in::{StripeStandIn, SECRET_KEY};
use ticketing_sagas::{
    BreakerSettings, Commands, PaymentProvider, PaymentService, PaymentSettings, SagaConfig,
    SagaWorker, DEFAULT_RESERVATION_GRACE,
};
use uuid::Uuid;

/// A fresh database with the sagas wired on it.
pub(crate) struct Fixture {
    pub(crate) db: ScratchDatabase,
    pub(crate) commands: Arc<Commands>,
    pub(crate) payments: Arc<PaymentService>,
    pub(crate) stripe: StripeStandIn,
}

pub(crate) fn metadata() -> CommandMetadata {
    CommandMetadata {
        correlation_id: Uuid::new_v4().to_string(),
        causation_id: Uuid::new_v4().to_string(),
        user_id: None,
        traceparent: None,
    }
}

pub(crate) const SELLER: &str = "seller";
pub(crate) const BUYER: &str = "buyer";

impl Drop for Fixture {
    fn drop(&mut self) {
        self.db.remove_blocking();
    }
}

impl Fixture {
    pub(crate) async fn new() -> Self {
        Self::with_breaker(
            BreakerSettings::default(),
            std::time::Duration::from_secs(5),
        )
        .await
    }

    pub(crate) async fn with_settle_within(settle_within: Duration) -> Self {
        Self::build(
            BreakerSettings::default(),
            std::time::Duration::from_secs(5),
            settle_within,
        )
        .await
    }

    pub(crate) async fn with_breaker(
        breaker: BreakerSettings,
        stripe_timeout: std::time::Duration,
    ) -> Self {
        Self::build(breaker, stripe_timeout, Duration::hours(2)).await
    }

    async fn build(
        breaker: BreakerSettings,
        stripe_timeout: std::time::Duration,
        settle_within: Duration,
    ) -> Self {
        let db = ScratchDatabase::create("ticketing_sagas", 8).await.unwrap();
        let stripe = StripeStandIn::start().await.unwrap();
        let commands = Arc::new(Commands::new(db.pool(), DEFAULT_RESERVATION_GRACE));
        let settings = PaymentSettings {
            stripe_secret_key: Some(SECRET_KEY.to_owned()),
            stripe_api_base: stripe.base_url(),
            stripe_timeout,
            breaker,
        };
        let (provider, _breaker) = settings.provider().unwrap();
        let payments = Arc::new(
            PaymentService::new(
                Arc::clone(&commands),
                provider,
                db.pool().clone(),
                Duration::seconds(1),
            )
            .with_settle_within(settle_within),
        );
        Self {
            db,
            commands,
            payments,
            stripe,
        }
    }

    pub(crate) fn worker(&self) -> SagaWorker {
        self.worker_with(SagaConfig {
            payment_wait: Duration::seconds(1),
            ..SagaConfig::default()
        })
    }

    pub(crate) fn worker_with(&self, config: SagaConfig) -> SagaWorker {
        SagaWorker::new(
            self.db.pool().clone(),
            Arc::clone(&self.commands),
            Arc::clone(&self.payments),
            config,
        )
    }

    /// Another process's payment service on the same database and Stripe
    /// (e.g. a gateway next to the saga worker), with its own provider.
    pub(crate) fn other_service(
        &self,
        provider: Arc<dyn PaymentProvider>,
        recovery_after: Duration,
    ) -> PaymentService {
        PaymentService::new(
            Arc::clone(&self.commands),
            provider,
            self.db.pool().clone(),
            recovery_after,
        )
    }

    pub(crate) async fn ticket(&self, price_cents: i64) -> String {
        let id = Uuid::new_v4().to_string();
        let create = TicketCommand::Create {
            title: Title::parse("concert").unwrap(),
            price: Money::from_cents(price_cents).unwrap(),
            user_id: SELLER.to_owned(),
        };
        let _ = self
            .commands
            .tickets
            .execute(&id, create, &metadata())
            .await
            .unwrap();
        id
    }

    /// Reserves `ticket_id` and places an order on it, as the gateway does.
    pub(crate) async fn order(&self, ticket_id: &str, expires_at: DateTime<Utc>) -> String {
        let order_id = Uuid::new_v4().to_string();
        let reserved = self
            .commands
            .tickets
            .execute(
                ticket_id,
                TicketCommand::Reserve {
                    order_id: order_id.clone(),
                    expires_at,
                },
                &metadata(),
            )
            .await
            .unwrap();
        let place = OrderCommand::Place {
            user_id: BUYER.to_owned(),
            ticket: OrderTicket {
                id: ticket_id.to_owned(),
                title: "concert".to_owned(),
                price_cents: reserved.aggregate.price().cents(),
                version: reserved.aggregate.version(),
            },
            expires_at,
        };
        let _ = self
            .commands
            .orders
            .execute(&order_id, place, &metadata())
            .await
            .unwrap();
        order_id
    }

    /// The buyer cancels `order_id`; it must be accepted.
    pub(crate) async fn cancel(&self, order_id: &str) {
        let cancel = OrderCommand::Cancel {
            user_id: BUYER.to_owned(),
        };
        let _ = self
            .commands
            .orders
            .execute(order_id, cancel, &metadata())
            .await
            .unwrap();
    }

    pub(crate) async fn reserved_by(&self, ticket_id: &str) -> Option<String> {
        let ticket = self.commands.tickets.load(ticket_id).await.unwrap();
        ticket.order_id().map(str::to_owned)
    }

    /// Runs rounds until nothing is due.
    pub(crate) async fn drain(&self, worker: &SagaWorker) {
        while worker.try_execute_task().await.unwrap()
            != ticketing_sagas::ExecutionOutcome::EmptyQueue
        {}
    }

    pub(crate) async fn timers(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM saga_timers")
            .fetch_one(self.db.pool())
            .await
            .unwrap()
    }
}
