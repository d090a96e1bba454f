//! The accounts and data the scenarios need, made through the public API
//! before any scenario runs: a signed-in load user (whose session every
//! signed-in request sends, as the original's runs sent one cookie), and
//! orders of that user for the list-orders and soak scenarios to read.

use anyhow::Context;
use serde::Deserialize;
use serde_json::json;

/// The password of every account the harness makes.
pub(crate) const PASSWORD: &str = "loadtest-password";

/// A signed-in account.
#[derive(Clone, Debug)]
pub(crate) struct Account {
    pub(crate) email: String,
    /// `session=<jwt>`, ready for a `Cookie` header.
    pub(crate) cookie: String,
}

#[derive(Deserialize)]
struct Created {
    id: String,
}

/// Signs up `email` and returns its session.
pub(crate) async fn sign_up(base_url: &str, email: &str) -> anyhow::Result<Account> {
    let response = reqwest::Client::new()
        .post(format!("{base_url}/api/users/signup"))
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await
        .with_context(|| format!("signing up {email}"))?;
    anyhow::ensure!(
        response.status() == reqwest::StatusCode::CREATED,
        "signing up {email} answered {}: {}",
        response.status(),
        response.text().await.unwrap_or_default()
    );
    let cookie = response
        .cookies()
        .find(|cookie| cookie.name() == "session")
        .map(|cookie| format!("session={}", cookie.value()))
        .context("sign-up set no session cookie")?;
    Ok(Account {
        email: email.to_owned(),
        cookie,
    })
}

/// `seller` lists `count` tickets and `buyer` orders each of them.
pub(crate) async fn seed_orders(
    base_url: &str,
    seller: &Account,
    buyer: &Account,
    count: usize,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    for n in 0..count {
        let ticket: Created = post(
            &client,
            &format!("{base_url}/api/tickets"),
            seller,
            json!({ "title": format!("loadtest-seed-{n}"), "price": 100 }),
        )
        .await
        .context("seeding a ticket")?;
        let _order: Created = post(
            &client,
            &format!("{base_url}/api/orders"),
            buyer,
            json!({ "ticketId": ticket.id }),
        )
        .await
        .context("seeding an order")?;
    }
    Ok(())
}

/// The ids of the first page of the ticket list (up to 1,000); if the
/// list is empty, `account` first lists 100 tickets.
pub(crate) async fn ticket_ids(base_url: &str, account: &Account) -> anyhow::Result<Vec<String>> {
    let client = reqwest::Client::new();
    let url = format!("{base_url}/api/tickets?limit=1000");
    let page: Vec<Created> = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?
        .error_for_status()?
        .json()
        .await
        .with_context(|| format!("decoding the answer of GET {url}"))?;
    let ids: Vec<String> = page.into_iter().map(|ticket| ticket.id).collect();
    if !ids.is_empty() {
        return Ok(ids);
    }
    let mut created = Vec::with_capacity(100);
    for n in 0..100 {
        let ticket: Created = post(
            &client,
            &format!("{base_url}/api/tickets"),
            account,
            json!({ "title": format!("loadtest-read-{n}"), "price": 100 }),
        )
        .await
        .context("creating a ticket to read")?;
        created.push(ticket.id);
    }
    Ok(created)
}

async fn post<T: for<'de> Deserialize<'de>>(
    client: &reqwest::Client,
    url: &str,
    account: &Account,
    body: serde_json::Value,
) -> anyhow::Result<T> {
    let response = client
        .post(url)
        .header(reqwest::header::COOKIE, &account.cookie)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    anyhow::ensure!(
        response.status() == reqwest::StatusCode::CREATED,
        "POST {url} answered {}: {}",
        response.status(),
        response.text().await.unwrap_or_default()
    );
    response
        .json()
        .await
        .with_context(|| format!("decoding the answer of POST {url}"))
}
