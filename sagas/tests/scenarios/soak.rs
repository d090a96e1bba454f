//! A randomized payment soak (issue 13): many orders paid, paid twice,
//! retried, cancelled and left to expire concurrently, while the Stripe
//! stand-in injects random faults (transient and stored 5xx, 429, 409,
//! 401, stalls before and after the charge), the gateway's COMMIT replies
//! are lost now and then (its database connection goes through the
//! testkit's `PgProxy`), its breaker opens and closes, and two saga
//! workers with short leases race on the timers.
//! Then every order is driven to its end (recovery and expiry run to
//! completion, within a bound) and checked against Stripe's ledger and the
//! event store:
//!
//! - at most one successful charge per order (duplicates: 0);
//! - an order is complete exactly when it has a charge, and its payment
//!   is the succeeded one carrying that charge; a cancelled or expired
//!   order has none; every charge in the ledger belongs to an order;
//! - a buyer told "paid" has a complete order;
//! - every ticket is held by at most one live order (the one that bought
//!   it), and by none once its orders ended;
//! - no order is left `awaiting:payment` (or `created`), no payment
//!   pending, no timer left.
//!
//! The run's plan comes from a seed (printed; `SOAK_SEED=<n>` replays the
//! plan, though not the exact interleaving); `SOAK_ORDERS` scales it up.
//! The counts are printed: `cargo nextest run -p ticketing-sagas soak
//! --no-capture`.

use chrono::{Duration, Utc};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};
use ticketing_aggregates::{
    Money, OrderCommand, OrderError, OrderStatus, OrderTicket, PaymentStatus, TicketCommand,
    TicketError, Title,
};
use ticketing_eventstore::{connect, CommandError, ScratchDatabase};
use ticketing_sagas::stripe_stand_in::{StripeStandIn, SECRET_KEY};
use ticketing_sagas::{
    BreakerSettings, Commands, PayError, PayRequest, PaymentService, PaymentSettings, SagaConfig,
    SagaWorker,
};
use ticketing_testkit::PgProxy;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::common::{metadata, BUYER, SELLER};

/// Every call to Stripe gives up after this (the stalls below outlast it).
const STRIPE_TIMEOUT: StdDuration = StdDuration::from_millis(250);
/// A stall before or after the charge: longer than the client's timeout,
/// shorter than the quiet tenth of the settle bound (Stripe finishes a
/// request it received before recovery gives its key up).
const STALL: StdDuration = StdDuration::from_millis(300);
/// When a payment's recovery timer fires, and how often it repeats.
const RECOVERY_AFTER_MS: i64 = 700;
/// Every payment is settled this long after it started, plus a tenth.
const SETTLE_WITHIN_MS: i64 = 8_000;
/// The saga workers' lease: shorter than a batch of slow recoveries.
const LEASE: StdDuration = StdDuration::from_millis(600);

/// SplitMix64: a small seeded generator, so a run's plan can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }

    fn millis(&mut self, low: u64, high: u64) -> StdDuration {
        StdDuration::from_millis(self.between(low, high))
    }

    fn fork(&mut self) -> Rng {
        Rng(self.next())
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Named counters.
#[derive(Default)]
struct Counts(Mutex<BTreeMap<&'static str, u64>>);

impl Counts {
    fn bump(&self, name: &'static str) {
        *self.0.lock().unwrap().entry(name).or_default() += 1;
    }

    fn get(&self, name: &str) -> u64 {
        self.0
            .lock()
            .unwrap()
            .get(name)
            .copied()
            .unwrap_or_default()
    }

    fn with_prefix(&self, prefix: &str) -> Vec<(&'static str, u64)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (*k, *v))
            .collect()
    }
}

/// What every order task shares: the gateway's side of the system.
struct Shop {
    commands: Arc<Commands>,
    gateway: PaymentService,
    tickets: Vec<String>,
    counts: Counts,
    /// Spread of the orders' start times.
    spread_ms: u64,
}

/// An order the soak placed, and what its buyer was told.
#[derive(Debug, Default)]
struct Placed {
    order_id: String,
    ticket_id: String,
    /// Payments the buyer was answered "paid" for.
    paid: Vec<String>,
    /// Every payment id used.
    payments: Vec<String>,
}

fn pay_request(order_id: &str, rng: &mut Rng) -> PayRequest {
    // One in five is declined by the card.
    let token = if rng.below(5) == 0 {
        "tok_chargeDeclined"
    } else {
        "tok_visa"
    };
    PayRequest {
        order_id: order_id.to_owned(),
        user_id: BUYER.to_owned(),
        token: token.to_owned(),
        payment_id: Uuid::new_v4().to_string(),
    }
}

/// Pays as a client does: an answer "unavailable" is sometimes retried
/// with the same request (the gateway replays it under its
/// Idempotency-Key, so it continues the same payment).
async fn pay(shop: &Shop, request: PayRequest, seed: u64) -> (String, bool) {
    let mut rng = Rng(seed);
    let mut tries = 0;
    loop {
        tries += 1;
        let answered = shop.gateway.pay(&request, &metadata()).await;
        let retry = match &answered {
            Ok(_) => {
                shop.counts.bump("pay: paid");
                return (request.payment_id, true);
            }
            Err(PayError::Declined(_)) => {
                shop.counts.bump("pay: declined");
                false
            }
            Err(PayError::Unavailable(_)) => {
                shop.counts.bump("pay: unavailable");
                tries < 3 && rng.below(2) == 0
            }
            Err(PayError::Order(refused)) => {
                shop.counts.bump(match refused {
                    CommandError::Rejected(OrderError::Cancelled) => {
                        "pay: refused, order cancelled or lapsed"
                    }
                    CommandError::Rejected(OrderError::PaymentInProgress) => {
                        "pay: refused, another payment in flight"
                    }
                    CommandError::Rejected(OrderError::AlreadyPaid) => "pay: refused, already paid",
                    CommandError::Rejected(OrderError::PaymentNotInFlight) => {
                        "pay: refused, this payment already failed"
                    }
                    _ => "pay: refused, other",
                });
                false
            }
            Err(PayError::Unexpected(error)) => {
                eprintln!("soak: unexpected payment error: {error:?}");
                shop.counts.bump("pay: unexpected error");
                false
            }
        };
        if !retry {
            return (request.payment_id, false);
        }
        shop.counts.bump("pay: retried with the same request");
        tokio::time::sleep(rng.millis(50, 400)).await;
    }
}

async fn cancel(shop: &Shop, order_id: &str) {
    let cancelled = shop
        .commands
        .orders
        .execute(
            order_id,
            OrderCommand::Cancel {
                user_id: BUYER.to_owned(),
            },
            &metadata(),
        )
        .await;
    shop.counts.bump(match cancelled {
        Ok(_) => "cancel: accepted",
        Err(CommandError::Rejected(
            OrderError::PaymentInProgress | OrderError::AlreadyComplete,
        )) => "cancel: refused (paying or paid)",
        Err(CommandError::Rejected(_)) => "cancel: refused (other)",
        Err(_) => "cancel: error",
    });
}

/// Reserves a ticket and places an order on it, as the gateway does.
async fn place(shop: &Shop, rng: &mut Rng) -> Option<Placed> {
    for _ in 0..5 {
        let ticket_id =
            &shop.tickets[usize::try_from(rng.below(shop.tickets.len() as u64)).unwrap()];
        let order_id = Uuid::new_v4().to_string();
        // Short windows, so expiry races with payment and cancellation.
        let window = i64::try_from(rng.between(500, 4_000)).unwrap();
        let expires_at = Utc::now() + Duration::milliseconds(window);
        let reserve = TicketCommand::Reserve {
            order_id: order_id.clone(),
            expires_at,
        };
        let reserved = match shop
            .commands
            .tickets
            .execute(ticket_id, reserve, &metadata())
            .await
        {
            Ok(reserved) => reserved,
            Err(CommandError::Rejected(TicketError::AlreadyReserved)) => {
                shop.counts.bump("order: ticket taken, another tried");
                tokio::time::sleep(rng.millis(50, 300)).await;
                continue;
            }
            Err(other) => {
                eprintln!("soak: reserving {ticket_id}: {other}");
                shop.counts.bump("order: reserve failed");
                continue;
            }
        };
        let place = OrderCommand::Place {
            user_id: BUYER.to_owned(),
            ticket: OrderTicket {
                id: ticket_id.clone(),
                title: "concert".to_owned(),
                price_cents: reserved.aggregate.price().cents(),
                version: reserved.aggregate.version(),
            },
            expires_at,
        };
        if let Err(error) = shop
            .commands
            .orders
            .execute(&order_id, place, &metadata())
            .await
        {
            // As the gateway does: release the ticket only if the order
            // is known not to exist (its reservation check would too).
            eprintln!("soak: placing {order_id}: {error}");
            shop.counts.bump("order: place failed");
            let placed = shop.commands.orders.load(&order_id).await;
            if !matches!(placed, Ok(ref order) if order.exists()) {
                continue;
            }
        }
        return Some(Placed {
            order_id,
            ticket_id: ticket_id.clone(),
            ..Placed::default()
        });
    }
    shop.counts.bump("order: no ticket free");
    None
}

/// One buyer: places an order, then a random script of payments (new,
/// retried, two at once), cancellations (alone or racing a payment), or
/// nothing (the order expires).
async fn buyer(shop: Arc<Shop>, mut rng: Rng) -> Option<Placed> {
    tokio::time::sleep(rng.millis(0, shop.spread_ms)).await;
    let mut placed = place(&shop, &mut rng).await?;
    let order = placed.order_id.clone();
    let mut last: Option<PayRequest> = None;
    for _ in 0..rng.between(1, 4) {
        tokio::time::sleep(rng.millis(0, 400)).await;
        let mut answers = Vec::new();
        match rng.below(100) {
            0..=39 => {
                let request = pay_request(&order, &mut rng);
                last = Some(request.clone());
                answers.push(pay(&shop, request, rng.next()).await);
            }
            40..=54 => {
                // The same request again (a client retrying after a lost
                // answer), or a fresh one if there was none.
                shop.counts.bump("script: repeat the last payment");
                let request = last
                    .clone()
                    .unwrap_or_else(|| pay_request(&order, &mut rng));
                answers.push(pay(&shop, request, rng.next()).await);
            }
            55..=64 => {
                shop.counts.bump("script: two payments at once");
                let (a, b) = (pay_request(&order, &mut rng), pay_request(&order, &mut rng));
                let (sa, sb) = (rng.next(), rng.next());
                let (x, y) = tokio::join!(pay(&shop, a, sa), pay(&shop, b, sb));
                answers.extend([x, y]);
            }
            65..=79 => {
                shop.counts.bump("script: pay and cancel at once");
                let request = pay_request(&order, &mut rng);
                let seed = rng.next();
                let (answer, ()) = tokio::join!(pay(&shop, request, seed), cancel(&shop, &order));
                answers.push(answer);
            }
            80..=89 => cancel(&shop, &order).await,
            _ => shop.counts.bump("script: wait"),
        }
        for (payment_id, paid) in answers {
            if paid {
                placed.paid.push(payment_id.clone());
            }
            placed.payments.push(payment_id);
        }
    }
    Some(placed)
}

/// Turns random stand-in faults on and off until `stop`.
async fn inject_faults(
    stripe: StripeStandIn,
    proxy: Arc<PgProxy>,
    mut rng: Rng,
    stop: CancellationToken,
    counts: Arc<Counts>,
) {
    while !stop.is_cancelled() {
        tokio::time::sleep(rng.millis(100, 500)).await;
        let hold = rng.millis(50, 400);
        match rng.below(9) {
            0 => {
                counts.bump("fault: 500 while it lasts");
                stripe.set_failing(true);
                tokio::time::sleep(hold).await;
                stripe.set_failing(false);
            }
            kind @ 1..=3 => {
                let (status, code, name) = match kind {
                    1 => (429, Some("rate_limit"), "fault: 429 rate_limit"),
                    2 => (409, Some("idempotency_key_in_use"), "fault: 409 key in use"),
                    _ => (401, None, "fault: 401 bad key"),
                };
                counts.bump(name);
                stripe.force_error(Some((status, "invalid_request_error", code)));
                tokio::time::sleep(hold).await;
                stripe.force_error(None);
            }
            4 => {
                counts.bump("fault: stall before the charge");
                stripe.set_stall(STALL);
                tokio::time::sleep(hold).await;
                stripe.set_stall(StdDuration::ZERO);
            }
            5 => {
                counts.bump("fault: stall after the charge");
                stripe.set_stall_after(STALL);
                tokio::time::sleep(hold).await;
                stripe.set_stall_after(StdDuration::ZERO);
            }
            8 => {
                // One of the gateway's next few COMMITs reaches the
                // server, its reply does not (it is read back); or, for a
                // lone event committed without a transaction (an order
                // completed, a ticket released), its INSERT's reply.
                let pass = usize::try_from(rng.below(4)).unwrap();
                if rng.below(2) == 0 {
                    counts.bump("fault: COMMIT reply lost (armed)");
                    proxy.lose_commit_reply(pass);
                } else {
                    counts.bump("fault: lone INSERT reply lost (armed)");
                    proxy.lose_reply_to("INSERT INTO events", pass);
                }
            }
            6 => {
                counts.bump("fault: stored 500, charged");
                stripe.fail_next_stored(true);
            }
            _ => {
                counts.bump("fault: stored 500, not charged");
                stripe.fail_next_stored(false);
            }
        }
    }
    stripe.set_failing(false);
    stripe.force_error(None);
    stripe.set_stall(StdDuration::ZERO);
    stripe.set_stall_after(StdDuration::ZERO);
}

fn provider_settings(stripe: &StripeStandIn) -> PaymentSettings {
    PaymentSettings {
        stripe_secret_key: Some(SECRET_KEY.to_owned()),
        stripe_api_base: stripe.base_url(),
        stripe_timeout: STRIPE_TIMEOUT,
        breaker: BreakerSettings {
            failure_threshold: 3,
            open_for: StdDuration::from_millis(300),
        },
    }
}

async fn count(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomized_payments_under_faults_charge_once_and_end_every_order() {
    let seed = env_u64("SOAK_SEED").unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        u64::try_from(nanos % u128::from(u64::MAX)).unwrap()
    });
    let orders = env_u64("SOAK_ORDERS").unwrap_or(200);
    // Printed first, so a failing run's output says how to replay it.
    println!("soak: seed {seed}, {orders} orders (replay: SOAK_SEED={seed} SOAK_ORDERS={orders})");
    let mut rng = Rng(seed);
    let started = Instant::now();

    let db = ScratchDatabase::create("ticketing_soak", 16).await.unwrap();
    let pool = db.pool().clone();
    let stripe = StripeStandIn::start().await.unwrap();
    let grace = Duration::milliseconds(500);
    // The saga process connects directly; the gateway through a proxy that
    // loses COMMIT replies.
    let commands = Arc::new(Commands::new(&pool, grace));
    let proxy = Arc::new(PgProxy::start(db.url()).await.unwrap());
    let gateway_pool = connect(&proxy.url(db.url()), 16).await.unwrap();
    let gateway_commands = Arc::new(Commands::new(&gateway_pool, grace));
    let recovery_after = Duration::milliseconds(RECOVERY_AFTER_MS);
    let settle_within = Duration::milliseconds(SETTLE_WITHIN_MS);
    // The gateway and the saga process each have their own provider and
    // breaker, as in production.
    let (gateway_provider, _) = provider_settings(&stripe).provider().unwrap();
    let (saga_provider, _) = provider_settings(&stripe).provider().unwrap();
    let gateway = PaymentService::new(
        Arc::clone(&gateway_commands),
        gateway_provider,
        gateway_pool.clone(),
        recovery_after,
    )
    .with_settle_within(settle_within);
    let saga_payments = Arc::new(
        PaymentService::new(
            Arc::clone(&commands),
            saga_provider,
            pool.clone(),
            recovery_after,
        )
        .with_settle_within(settle_within),
    );

    let mut tickets = Vec::new();
    for _ in 0..(orders * 2 / 3).max(4) {
        let id = Uuid::new_v4().to_string();
        let create = TicketCommand::Create {
            title: Title::parse("concert").unwrap(),
            price: Money::from_cents(i64::try_from(rng.between(5, 200)).unwrap() * 100).unwrap(),
            user_id: SELLER.to_owned(),
        };
        let _ = commands
            .tickets
            .execute(&id, create, &metadata())
            .await
            .unwrap();
        tickets.push(id);
    }
    let shop = Arc::new(Shop {
        commands: Arc::clone(&gateway_commands),
        gateway,
        tickets: tickets.clone(),
        counts: Counts::default(),
        spread_ms: orders * 20,
    });

    // Two saga workers racing on the same timers, with a short lease.
    let workers_stop = CancellationToken::new();
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let worker = SagaWorker::new(
                pool.clone(),
                Arc::clone(&commands),
                Arc::clone(&saga_payments),
                SagaConfig {
                    batch_size: 8,
                    lease: LEASE,
                    poll_interval: StdDuration::from_millis(50),
                    payment_wait: Duration::milliseconds(300),
                },
            );
            tokio::spawn(worker.run_until_stopped(workers_stop.clone()))
        })
        .collect();
    let faults_stop = CancellationToken::new();
    let fault_counts = Arc::new(Counts::default());
    let faults = tokio::spawn(inject_faults(
        stripe.clone(),
        Arc::clone(&proxy),
        rng.fork(),
        faults_stop.clone(),
        Arc::clone(&fault_counts),
    ));

    // Act: the buyers.
    let buyers: Vec<_> = (0..orders)
        .map(|_| tokio::spawn(buyer(Arc::clone(&shop), rng.fork())))
        .collect();
    let mut placed = Vec::new();
    for buyer in buyers {
        if let Some(order) = buyer.await.unwrap() {
            placed.push(order);
        }
    }
    let buying = started.elapsed();
    faults_stop.cancel();
    faults.await.unwrap();

    // Every order to its end: recovery and expiry run until no timer is
    // left, within the recovery bound (the settle bound, its quiet tenth,
    // rounds and leases).
    let drained_by = StdDuration::from_millis(u64::try_from(SETTLE_WITHIN_MS * 11 / 10).unwrap())
        + StdDuration::from_secs(20);
    let draining = Instant::now();
    let mut violations = Vec::new();
    loop {
        let left = count(&pool, "SELECT count(*) FROM saga_timers").await;
        if left == 0 {
            break;
        }
        if draining.elapsed() > drained_by {
            let kinds: Vec<(String, i64)> =
                sqlx::query_as("SELECT kind, count(*) FROM saga_timers GROUP BY kind")
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            violations.push(format!("timers left after {drained_by:?}: {kinds:?}"));
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    let drained = draining.elapsed();
    workers_stop.cancel();
    for worker in workers {
        worker.await.unwrap();
    }

    // Assert, order by order, against the ledger and the store.
    let ledger = stripe.charges();
    let mut by_order: HashMap<String, Vec<&serde_json::Value>> = HashMap::new();
    for charge in &ledger {
        let order = charge["metadata"]["order_id"].as_str().unwrap_or_default();
        by_order.entry(order.to_owned()).or_default().push(charge);
    }
    let known: HashSet<&str> = placed.iter().map(|p| p.order_id.as_str()).collect();
    for order in by_order.keys() {
        if !known.contains(order.as_str()) {
            violations.push(format!("a charge for an unknown order {order:?}"));
        }
    }
    let (mut paid, mut ended, mut duplicates) = (0_u64, 0_u64, 0_u64);
    let mut live_by_ticket: HashMap<&str, Vec<&str>> = HashMap::new();
    for order in &placed {
        let id = order.order_id.as_str();
        let state = commands.orders.load(id).await.unwrap();
        let charges = by_order.get(id).map(Vec::as_slice).unwrap_or_default();
        if charges.len() > 1 {
            duplicates += charges.len() as u64 - 1;
            let keys: Vec<_> = charges
                .iter()
                .map(|c| (&c["id"], &c["metadata"]["attempt"]))
                .collect();
            violations.push(format!(
                "order {id} charged {} times: {keys:?}",
                charges.len()
            ));
        }
        if state.status() != OrderStatus::Cancelled {
            live_by_ticket
                .entry(order.ticket_id.as_str())
                .or_default()
                .push(id);
        }
        match state.status() {
            OrderStatus::Complete => {
                paid += 1;
                let payment_id = state.payment_id().unwrap_or_default();
                let payment = commands.payments.load(payment_id).await.unwrap();
                let charge_id = charges.first().and_then(|c| c["id"].as_str());
                if payment.status() != PaymentStatus::Succeeded
                    || charge_id.is_none()
                    || payment.stripe_id() != charge_id
                {
                    violations.push(format!(
                        "order {id} complete with payment {payment_id} {:?} ({:?}) but the ledger has {charge_id:?}",
                        payment.status(),
                        payment.stripe_id()
                    ));
                }
            }
            OrderStatus::Cancelled => {
                ended += 1;
                if !charges.is_empty() {
                    violations.push(format!(
                        "order {id} ended but was charged {:?}",
                        charges[0]["id"]
                    ));
                }
            }
            other => {
                // What held it: the payment in flight, and which attempt.
                let payment = match state.payment_id() {
                    Some(p) => Some(commands.payments.load(p).await.unwrap().status()),
                    None => None,
                };
                violations.push(format!(
                    "order {id} left {} (attempt {}, payment {:?} {payment:?}, {} charges)",
                    other.as_str(),
                    state.payment_attempts(),
                    state.payment_id(),
                    charges.len()
                ));
            }
        }
        for payment_id in &order.paid {
            if state.status() != OrderStatus::Complete
                || state.payment_id() != Some(payment_id.as_str())
            {
                violations.push(format!(
                    "order {id}: the buyer was told {payment_id} paid it, but it is {} with {:?}",
                    state.status().as_str(),
                    state.payment_id()
                ));
            }
        }
        for payment_id in &order.payments {
            let payment = commands.payments.load(payment_id).await.unwrap();
            if payment.exists() && payment.status() == PaymentStatus::Pending {
                violations.push(format!("payment {payment_id} of order {id} left pending"));
            }
        }
    }
    for ticket_id in &tickets {
        let holder = commands.tickets.load(ticket_id).await.unwrap();
        let live = live_by_ticket
            .get(ticket_id.as_str())
            .cloned()
            .unwrap_or_default();
        let expected = live.first().copied();
        if live.len() > 1 || holder.order_id() != expected {
            violations.push(format!(
                "ticket {ticket_id} held by {:?}, live orders on it {live:?}",
                holder.order_id()
            ));
        }
    }
    let succeeded = count(
        &pool,
        "SELECT count(*) FROM events WHERE event_type = 'PaymentSucceeded'",
    )
    .await;
    let expired = count(
        &pool,
        "SELECT count(*) FROM events WHERE event_type = 'OrderExpired'",
    )
    .await;
    let cancelled = count(
        &pool,
        "SELECT count(*) FROM events WHERE event_type = 'OrderCancelled'",
    )
    .await;
    let failed = count(
        &pool,
        "SELECT count(*) FROM events WHERE event_type = 'PaymentFailed'",
    )
    .await;
    if u64::try_from(succeeded).unwrap() != paid {
        violations.push(format!(
            "{succeeded} payments succeeded for {paid} paid orders"
        ));
    }

    let faults_injected: u64 = fault_counts
        .with_prefix("fault: ")
        .iter()
        .map(|(_, n)| n)
        .sum();
    println!("soak: seed {seed}: {} orders placed of {orders} ({} tickets), buying {buying:?}, settling {drained:?}", placed.len(), tickets.len());
    println!(
        "soak: paid {paid}, ended {ended} (cancelled {cancelled}, expired {expired}), payments failed {failed} (declined answers {})",
        shop.counts.get("pay: declined")
    );
    println!(
        "soak: ledger {} charges, {} Stripe requests, {} searches; duplicates {duplicates}",
        ledger.len(),
        stripe.requests(),
        stripe.searches()
    );
    println!(
        "soak: faults injected {faults_injected} ({} COMMIT or lone INSERT replies lost)",
        proxy.lost_replies()
    );
    for (name, n) in fault_counts
        .with_prefix("")
        .into_iter()
        .chain(shop.counts.with_prefix(""))
    {
        println!("soak:   {name}: {n}");
    }
    if !violations.is_empty() {
        for violation in violations.iter().take(30) {
            println!("soak: VIOLATION {violation}");
        }
        panic!(
            "soak (SOAK_SEED={seed} SOAK_ORDERS={orders}): {} violations, first: {}",
            violations.len(),
            violations[0]
        );
    }
    assert_eq!(duplicates, 0);
    assert!(paid > 0 && ended > 0, "the soak exercised nothing");
    db.remove().await.unwrap();
}
