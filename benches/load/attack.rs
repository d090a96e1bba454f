//! Each scenario as a goose attack: the users, their transactions and the
//! requests they make, against a base URL.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use goose::client::GooseClientBuilder;
use goose::config::GooseConfiguration;
use goose::prelude::*;
use serde_json::json;

use crate::fixtures::{Account, PASSWORD};
use crate::measurement::Measurement;
use crate::profile::Scenario;

/// A request name of the journey's sign-ups, which happen while users
/// start and are left out of its figures.
const JOURNEY_SIGN_UP: &str = "journey: sign up (setup)";

/// The journey's steps, as named in the results.
pub(crate) const JOURNEY_STEPS: [&str; 4] = [
    "journey: POST /api/tickets",
    "journey: POST /api/orders",
    "journey: POST /api/payments",
    "journey: GET /api/orders",
];

/// What every user of an attack shares.
struct Shared {
    account: Account,
    /// Numbers the tickets (`loadtest-ticket-<n>`) and the journey's
    /// accounts.
    counter: AtomicU64,
    run_id: String,
    /// The tickets get-ticket reads, in turn.
    ticket_ids: Vec<String>,
}

/// The measured result of one scenario: the whole, and for the journey each
/// step.
pub(crate) struct Outcome {
    pub(crate) total: Measurement,
    pub(crate) steps: Vec<(String, Measurement)>,
}

/// Runs `scenario` for `run_time` (once every user has started) against
/// `base_url` as `account`.
pub(crate) async fn run(
    scenario: Scenario,
    run_time: Duration,
    base_url: &str,
    account: &Account,
    run_id: &str,
) -> anyhow::Result<Outcome> {
    let ticket_ids = if scenario == Scenario::GetTicket {
        crate::fixtures::ticket_ids(base_url, account).await?
    } else {
        Vec::new()
    };
    let shared = Arc::new(Shared {
        account: account.clone(),
        counter: AtomicU64::new(0),
        run_id: run_id.to_owned(),
        ticket_ids,
    });
    let configuration = configuration(scenario, run_time, base_url)?;
    let attack = GooseAttack::initialize_with_config(configuration)?;
    let attack = match scenario {
        // A journey user keeps its own session in its own cookie jar.
        Scenario::Journey => {
            attack.set_client_builder_with_cookies(GooseClientBuilder::new().timeout(TIMEOUT))?
        }
        // The others send one session, as a header, over a shared pool
        // of connections (one per concurrent request, as oha's were).
        _ => attack.set_client_builder_without_cookies(
            GooseClientBuilder::new().without_cookies().timeout(TIMEOUT),
        )?,
    };
    let metrics = attack
        .register_scenario(users(scenario, shared))
        .execute()
        .await
        .with_context(|| format!("goose failed running {}", scenario.name()))?;
    let total = Measurement::from_goose(&metrics, |name| name != JOURNEY_SIGN_UP)?;
    let steps = if scenario == Scenario::Journey {
        JOURNEY_STEPS
            .iter()
            .map(|step| {
                let measured = Measurement::from_goose(&metrics, |name| name == *step)?;
                Ok(((*step).to_owned(), measured))
            })
            .collect::<anyhow::Result<_>>()?
    } else {
        Vec::new()
    };
    Ok(Outcome { total, steps })
}

/// The longest a request may take before it counts as unanswered: the
/// original's p99 was 50.9 s, so its runs waited at least that long.
const TIMEOUT: Duration = Duration::from_secs(60);

/// goose's settings for `scenario`, through its documented command line.
pub(crate) fn configuration(
    scenario: Scenario,
    run_time: Duration,
    base_url: &str,
) -> anyhow::Result<GooseConfiguration> {
    let args = [
        "--host".to_owned(),
        base_url.to_owned(),
        "--users".to_owned(),
        scenario.users().to_string(),
        "--increase-rate".to_owned(),
        scenario.increase_rate().to_string(),
        "--run-time".to_owned(),
        format!("{}s", run_time.as_secs()),
        "--timeout".to_owned(),
        TIMEOUT.as_secs().to_string(),
        "--no-telnet".to_owned(),
        "--no-print-metrics".to_owned(),
        "--no-error-summary".to_owned(),
        "--quiet".to_owned(),
    ];
    Ok(GooseConfiguration::parse_args_default(&args)?)
}

/// Wraps `step` (an async fn of the user and the shared state) as a goose
/// transaction.
macro_rules! step {
    ($shared:expr, $step:ident) => {{
        let shared = Arc::clone(&$shared);
        Transaction::new(Arc::new(move |user| {
            Box::pin($step(user, Arc::clone(&shared)))
        }))
        .set_name(stringify!($step))
    }};
}

fn users(scenario: Scenario, shared: Arc<Shared>) -> goose::goose::Scenario {
    let users = goose::goose::Scenario::new(scenario.name());
    match scenario {
        Scenario::SignIn => users.register_transaction(step!(shared, sign_in)),
        Scenario::CreateTicket | Scenario::Pipeline => {
            users.register_transaction(step!(shared, create_ticket))
        }
        Scenario::ListTickets | Scenario::Spike => {
            users.register_transaction(step!(shared, list_tickets))
        }
        Scenario::GetTicket => users.register_transaction(step!(shared, get_ticket)),
        Scenario::ListOrders | Scenario::Soak => {
            users.register_transaction(step!(shared, list_orders))
        }
        Scenario::Journey => users
            .register_transaction(step!(shared, journey_sign_up).set_on_start())
            .register_transaction(step!(shared, journey)),
    }
}

fn failure(message: String) -> Box<TransactionError> {
    Box::new(TransactionError::Custom(message))
}

async fn sign_in(user: &mut GooseUser, shared: Arc<Shared>) -> TransactionResult {
    let body = json!({ "email": shared.account.email, "password": PASSWORD });
    let builder = user
        .get_request_builder(&GooseMethod::Post, "/api/users/signin")?
        .json(&body);
    let request = GooseRequest::builder()
        .method(GooseMethod::Post)
        .path("/api/users/signin")
        .set_request_builder(builder)
        .expect_status_code(200)
        .build();
    let _response = user.request(request).await?;
    Ok(())
}

async fn create_ticket(user: &mut GooseUser, shared: Arc<Shared>) -> TransactionResult {
    let n = shared.counter.fetch_add(1, Ordering::Relaxed);
    let body = json!({ "title": format!("loadtest-ticket-{n}"), "price": 100 });
    let builder = user
        .get_request_builder(&GooseMethod::Post, "/api/tickets")?
        .header("cookie", &shared.account.cookie)
        .json(&body);
    let request = GooseRequest::builder()
        .method(GooseMethod::Post)
        .path("/api/tickets")
        .set_request_builder(builder)
        .expect_status_code(201)
        .build();
    let _response = user.request(request).await?;
    Ok(())
}

async fn list_tickets(user: &mut GooseUser, _shared: Arc<Shared>) -> TransactionResult {
    let _response = user.get("/api/tickets").await?;
    Ok(())
}

async fn get_ticket(user: &mut GooseUser, shared: Arc<Shared>) -> TransactionResult {
    let n = shared.counter.fetch_add(1, Ordering::Relaxed);
    let index = usize::try_from(n).unwrap_or_default() % shared.ticket_ids.len().max(1);
    let Some(id) = shared.ticket_ids.get(index) else {
        return Err(failure("no ticket to read".to_owned()));
    };
    let path = format!("/api/tickets/{id}");
    let request = GooseRequest::builder()
        .path(path.as_str())
        .name("GET /api/tickets/{id}")
        .expect_status_code(200)
        .build();
    let _response = user.request(request).await?;
    Ok(())
}

async fn list_orders(user: &mut GooseUser, shared: Arc<Shared>) -> TransactionResult {
    let builder = user
        .get_request_builder(&GooseMethod::Get, "/api/orders")?
        .header("cookie", &shared.account.cookie);
    let request = GooseRequest::builder()
        .path("/api/orders")
        .set_request_builder(builder)
        .build();
    let _response = user.request(request).await?;
    Ok(())
}

/// Each journey user signs up once (its cookie jar keeps the session).
async fn journey_sign_up(user: &mut GooseUser, shared: Arc<Shared>) -> TransactionResult {
    let n = shared.counter.fetch_add(1, Ordering::Relaxed);
    let email = format!("journey-{}-{n}@loadtest.example", shared.run_id);
    let body = json!({ "email": email, "password": PASSWORD });
    let builder = user
        .get_request_builder(&GooseMethod::Post, "/api/users/signup")?
        .json(&body);
    let request = GooseRequest::builder()
        .method(GooseMethod::Post)
        .path("/api/users/signup")
        .name(JOURNEY_SIGN_UP)
        .set_request_builder(builder)
        .expect_status_code(201)
        .build();
    let _response = user.request(request).await?;
    Ok(())
}

/// Create a ticket, order it, pay for the order, list the orders. A failed
/// step ends the iteration (later steps need its id), except the payment:
/// the list still runs, so a missing payments endpoint shows as 404s on
/// that step alone.
async fn journey(user: &mut GooseUser, shared: Arc<Shared>) -> TransactionResult {
    let n = shared.counter.fetch_add(1, Ordering::Relaxed);
    let ticket = post_for_id(
        user,
        "/api/tickets",
        JOURNEY_STEPS[0],
        json!({ "title": format!("loadtest-ticket-{n}"), "price": 100 }),
    )
    .await?;
    let order = post_for_id(
        user,
        "/api/orders",
        JOURNEY_STEPS[1],
        json!({ "ticketId": ticket }),
    )
    .await?;
    let _payment = post_for_id(
        user,
        "/api/payments",
        JOURNEY_STEPS[2],
        json!({ "token": "tok_visa", "orderId": order }),
    )
    .await;
    let request = GooseRequest::builder()
        .path("/api/orders")
        .name(JOURNEY_STEPS[3])
        .build();
    let _response = user.request(request).await?;
    Ok(())
}

/// POSTs `body`, expects 201, and returns the created resource's `id`.
async fn post_for_id(
    user: &mut GooseUser,
    path: &str,
    name: &str,
    body: serde_json::Value,
) -> Result<String, Box<TransactionError>> {
    let builder = user
        .get_request_builder(&GooseMethod::Post, path)?
        .json(&body);
    let request = GooseRequest::builder()
        .method(GooseMethod::Post)
        .path(path)
        .name(name)
        .set_request_builder(builder)
        .expect_status_code(201)
        .build();
    let goose = user.request(request).await?;
    let response = goose
        .response
        .map_err(|e| failure(format!("{name}: no response: {e}")))?;
    let status = response.status();
    if status.as_u16() != 201 {
        return Err(failure(format!("{name} answered {status}")));
    }
    let created: serde_json::Value = response
        .json()
        .await
        .map_err(|e| failure(format!("{name}: undecodable body: {e}")))?;
    created
        .get("id")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| failure(format!("{name}: no id in {created}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::profile::Profile;

    #[test]
    fn goose_accepts_the_settings_of_every_scenario() {
        for profile in [Profile::Short, Profile::Full] {
            for scenario in Scenario::ALL {
                let run_time = scenario.duration(profile);
                let configuration =
                    configuration(scenario, run_time, "http://127.0.0.1:3000").unwrap();
                assert_eq!(configuration.users, Some(scenario.users()));
                assert_eq!(
                    configuration.run_time.as_deref(),
                    Some(format!("{}s", scenario.duration(profile).as_secs()).as_str())
                );
            }
        }
    }
}
