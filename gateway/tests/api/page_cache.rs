//! Pages served from memory: equal to the page the database gives, never
//! older than a consistency token, 304 while unchanged, and one user's
//! orders never another's.
//!
//! No projection worker runs here: the tests write the views as it does
//! and then move the read side's generation, as it does after each commit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use reqwest::header::{CACHE_CONTROL, CONTENT_ENCODING, ETAG, IF_NONE_MATCH};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{body, spawn_app_built, TestApp};

/// The read side's generation, moved by the tests' "projection".
#[derive(Clone, Default)]
struct Generation(Arc<AtomicU64>);

impl Generation {
    fn bump(&self) {
        let _ = self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// An app whose pages are cached, keyed by `generation`; pages live long
/// enough that only the generation or a token can drop them in a test.
async fn cached_app(generation: &Generation) -> TestApp {
    let counter = Arc::clone(&generation.0);
    spawn_app_built(
        |settings| {
            settings.page_cache_max_age = Duration::from_secs(600);
            settings.consistency_wait = Duration::from_secs(2);
        },
        move |app| {
            let app = app.with_read_generation(Arc::new(move || counter.load(Ordering::SeqCst)));
            assert!(app.caches_pages());
            app
        },
    )
    .await
}

/// What the projection writes for a new ticket; returns its id.
async fn project_ticket(pool: &PgPool, title: &str) -> String {
    let id = Uuid::now_v7().to_string();
    project_ticket_with_id(pool, &id, title).await;
    id
}

async fn project_ticket_with_id(pool: &PgPool, id: &str, title: &str) {
    sqlx::query(
        "INSERT INTO ticket_views (id, title, price_cents, user_id, version, last_sequence) \
         VALUES ($1, $2, 1000, 'seller', 0, 1)",
    )
    .bind(id)
    .bind(title)
    .execute(pool)
    .await
    .unwrap();
}

async fn retitle(pool: &PgPool, id: &str, title: &str) {
    sqlx::query(
        "UPDATE ticket_views SET title = $2, version = version + 1, \
         last_sequence = last_sequence + 1 WHERE id = $1",
    )
    .bind(id)
    .bind(title)
    .execute(pool)
    .await
    .unwrap();
}

/// What the projection writes for a placed order: the order, and its
/// ticket reserved.
async fn project_order(pool: &PgPool, user_id: &str, ticket_id: &str, position: i64) -> String {
    let id = Uuid::now_v7().to_string();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(
        "UPDATE ticket_views SET order_id = $2, version = version + 1, \
         last_sequence = last_sequence + 1 WHERE id = $1",
    )
    .bind(ticket_id)
    .bind(&id)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO order_views (id, user_id, status, expires_at, ticket_id, ticket_title, \
           ticket_price_cents, ticket_version, version, last_sequence, placed_position) \
         SELECT $1, $2, 'created', now() + interval '15 minutes', id, title, price_cents, \
           version, 0, 1, $3 FROM ticket_views WHERE id = $4",
    )
    .bind(&id)
    .bind(user_id)
    .bind(position)
    .bind(ticket_id)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    id
}

/// What the projection writes for a cancelled order: the order, and its
/// ticket released.
async fn project_cancel(pool: &PgPool, order_id: &str) {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(
        "UPDATE ticket_views SET order_id = NULL, version = version + 1, \
         last_sequence = last_sequence + 1 WHERE order_id = $1",
    )
    .bind(order_id)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE order_views SET status = 'cancelled', version = version + 1, \
         last_sequence = last_sequence + 1 WHERE id = $1",
    )
    .bind(order_id)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

async fn get(client: &Client, url: String) -> (StatusCode, String, Value) {
    let response = client.get(url).send().await.unwrap();
    let status = response.status();
    let tag = response
        .headers()
        .get(ETAG)
        .map(|tag| tag.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = if status == StatusCode::OK {
        response.json().await.unwrap()
    } else {
        Value::Null
    };
    (status, tag, body)
}

fn titles(page: &Value) -> Vec<&str> {
    page.as_array()
        .unwrap()
        .iter()
        .map(|ticket| ticket["title"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_page_is_served_from_memory_until_the_read_side_moves() {
    let generation = Generation::default();
    let app = cached_app(&generation).await;
    let id = project_ticket(&app.pool, "concert").await;
    generation.bump();
    let url = app.url("/api/tickets");
    let (_, first_tag, first) = get(&app.client, url.clone()).await;
    assert_eq!(titles(&first), ["concert"]);

    // A change the generation does not show yet (the projection committed
    // and has not counted it): the page in memory is what is served.
    retitle(&app.pool, &id, "ballet").await;
    let (_, tag, page) = get(&app.client, url.clone()).await;
    assert_eq!(
        (titles(&page), tag.as_str()),
        (vec!["concert"], first_tag.as_str())
    );
    let (_, _, shown) = get(&app.client, app.url(&format!("/api/tickets/{id}"))).await;
    assert_eq!(shown["title"], "ballet", "first read of the ticket: a miss");

    // Counted: the next request reads the database again.
    generation.bump();
    let (_, tag, page) = get(&app.client, url).await;
    assert_eq!(titles(&page), ["ballet"]);
    assert_ne!(tag, first_tag);
}

#[tokio::test]
async fn an_unchanged_page_is_304_and_a_changed_one_200_also_from_memory() {
    let generation = Generation::default();
    let app = cached_app(&generation).await;
    for n in 0..200 {
        let _ = project_ticket(&app.pool, &format!("seat {n}")).await;
    }
    generation.bump();
    let url = app.url("/api/tickets");
    let (_, tag, _) = get(&app.client, url.clone()).await;

    // Twice: the miss that filled the entry, then hits.
    for _ in 0..2 {
        let unchanged = app
            .client
            .get(&url)
            .header(IF_NONE_MATCH, &tag)
            .send()
            .await
            .unwrap();
        assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(unchanged.headers()[ETAG], tag.as_str());
        assert_eq!(unchanged.headers()[CACHE_CONTROL], "public, no-cache");
        assert!(unchanged.bytes().await.unwrap().is_empty());
    }
    // A page from memory is still compressed when accepted.
    let compressed = app
        .client
        .get(&url)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(compressed.headers()[CONTENT_ENCODING], "gzip");
    assert_eq!(compressed.headers()[ETAG], tag.as_str());

    let _ = project_ticket(&app.pool, "ballet").await;
    generation.bump();
    let changed = app
        .client
        .get(&url)
        .header(IF_NONE_MATCH, &tag)
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), StatusCode::OK);
    assert_ne!(changed.headers()[ETAG], tag.as_str());
    let listed: Vec<Value> = changed.json().await.unwrap();
    assert_eq!(listed.len(), 201);
}

/// The body of a response in `encoding`, decoded.
fn decoded(encoding: Option<&str>, bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    match encoding {
        None => out.extend_from_slice(bytes),
        Some("gzip") => {
            let _ = flate2::read::GzDecoder::new(bytes)
                .read_to_end(&mut out)
                .unwrap();
        }
        Some("br") => {
            let _ = brotli::Decompressor::new(bytes, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        Some("zstd") => out = zstd::decode_all(bytes).unwrap(),
        Some(other) => panic!("unexpected encoding {other}"),
    }
    out
}

#[tokio::test]
async fn a_page_from_memory_comes_in_the_encoding_asked_for_and_decodes_to_the_page() {
    let generation = Generation::default();
    let app = cached_app(&generation).await;
    for n in 0..50 {
        let _ = project_ticket(&app.pool, &format!("seat {n}")).await;
    }
    generation.bump();
    let url = app.url("/api/tickets");
    let plain = app.client.get(&url).send().await.unwrap();
    assert!(plain.headers().get(CONTENT_ENCODING).is_none());
    let tag = plain.headers()[ETAG].to_str().unwrap().to_owned();
    let page = plain.bytes().await.unwrap();

    for (accept, expected) in [
        ("gzip", Some("gzip")),
        ("br", Some("br")),
        ("zstd", Some("zstd")),
        ("gzip, br, zstd", Some("zstd")),
        ("zstd;q=0.1, gzip;q=0.9", Some("gzip")),
        ("identity", None),
        ("deflate", None),
    ] {
        // The first makes the entry's copy, the second serves it.
        for _ in 0..2 {
            let response = app
                .client
                .get(&url)
                .header("accept-encoding", accept)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{accept}");
            let encoding = response
                .headers()
                .get(CONTENT_ENCODING)
                .map(|value| value.to_str().unwrap().to_owned());
            assert_eq!(encoding.as_deref(), expected, "{accept}");
            assert_eq!(response.headers()[ETAG], tag.as_str(), "{accept}");
            if expected.is_some() {
                let vary = response.headers()[reqwest::header::VARY].to_str().unwrap();
                assert!(vary.contains("accept-encoding"), "{accept}: {vary}");
            }
            let body = response.bytes().await.unwrap();
            assert_eq!(decoded(expected, &body), page.to_vec(), "{accept}");
        }
    }
    // Unchanged: 304 in any encoding, with no body and no encoding.
    let unchanged = app
        .client
        .get(&url)
        .header("accept-encoding", "gzip")
        .header(IF_NONE_MATCH, &tag)
        .send()
        .await
        .unwrap();
    assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);
    assert!(unchanged.headers().get(CONTENT_ENCODING).is_none());
    assert!(unchanged.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_token_newer_than_the_page_in_memory_is_never_answered_with_it() {
    let generation = Generation::default();
    let app = cached_app(&generation).await;
    let (seller, _) = app.signed_in_client().await;
    let _ = project_ticket(&app.pool, "older").await;
    generation.bump();
    // In memory: the list and the ticket list's first page without the
    // ticket about to be sold.
    let (_, _, before) = get(&app.client, app.url("/api/tickets")).await;
    assert_eq!(titles(&before), ["older"]);

    let created = app
        .post(
            &seller,
            "/api/tickets",
            json!({ "title": "concert", "price": 10 }),
        )
        .await;
    let token = created.headers()["x-consistency-token"]
        .to_str()
        .unwrap()
        .to_owned();
    let id = body(created).await["id"].as_str().unwrap().to_owned();
    let (_, _, cached) = get(&seller, app.url("/api/tickets")).await;
    assert_eq!(
        titles(&cached),
        ["older"],
        "the seller's cookie waits for a view no projection writes here, then serves what is there"
    );

    // The read with the token waits; the view appears while the generation
    // does not move (the worst case: committed, not yet counted).
    let read = app
        .client
        .get(app.url("/api/tickets"))
        .header("x-consistency-token", &token)
        .send();
    let project = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        project_ticket_with_id(&app.pool, &id, "concert").await;
    };
    let (response, ()) = tokio::join!(read, project);
    let response = response.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let page: Value = response.json().await.unwrap();
    assert_eq!(titles(&page), ["older", "concert"]);

    // The token is now in the views: a read with it finds the page just
    // computed, and so does the seller's cookie; one without a token may
    // be served it too.
    let with_token = app
        .client
        .get(app.url("/api/tickets"))
        .header("x-consistency-token", &token);
    for request in [with_token, seller.get(app.url("/api/tickets"))] {
        let page: Value = request.send().await.unwrap().json().await.unwrap();
        assert_eq!(titles(&page), ["older", "concert"]);
    }
    let (_, _, shown) = get(&seller, app.url(&format!("/api/tickets/{id}"))).await;
    assert_eq!(shown["title"], "concert");
}

#[tokio::test]
async fn a_users_orders_never_answer_another_user() {
    let generation = Generation::default();
    let app = cached_app(&generation).await;
    let (alice, alice_id) = app.signed_in_client().await;
    let (bob, bob_id) = app.signed_in_client().await;
    let first = project_ticket(&app.pool, "alice's").await;
    let second = project_ticket(&app.pool, "bob's").await;
    let alices = project_order(&app.pool, &alice_id, &first, 1).await;
    let bobs = project_order(&app.pool, &bob_id, &second, 2).await;
    generation.bump();

    for _ in 0..3 {
        for (client, user, order) in [(&alice, &alice_id, &alices), (&bob, &bob_id, &bobs)] {
            let response = client.get(app.url("/api/orders")).send().await.unwrap();
            assert_eq!(response.headers()[CACHE_CONTROL], "private, no-cache");
            let orders: Vec<Value> = response.json().await.unwrap();
            assert_eq!(orders.len(), 1);
            assert_eq!(orders[0]["id"], order.as_str());
            assert_eq!(orders[0]["userId"], user.as_str());
        }
    }
    // Signed out, the same path is refused, never served from memory.
    let anonymous = app.client.get(app.url("/api/orders")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn without_a_generation_nothing_is_kept() {
    let app = spawn_app_built(|_| {}, |app| app).await;
    let id = project_ticket(&app.pool, "concert").await;
    let (_, _, _) = get(&app.client, app.url("/api/tickets")).await;
    retitle(&app.pool, &id, "ballet").await;
    let (_, _, page) = get(&app.client, app.url("/api/tickets")).await;
    assert_eq!(titles(&page), ["ballet"]);
}

/// A change the projection makes to the views.
#[derive(Debug, Clone)]
enum Change {
    Create,
    /// The n-th ticket (modulo how many there are) gets a new title.
    Update(usize),
    /// The n-th ticket, if available, is ordered by user 0 or 1.
    Reserve(usize, usize),
    /// The n-th order, if live, is cancelled.
    Cancel(usize),
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        3 => Just(Change::Create),
        2 => any::<usize>().prop_map(Change::Update),
        2 => (any::<usize>(), 0..2usize).prop_map(|(n, user)| Change::Reserve(n, user)),
        1 => any::<usize>().prop_map(Change::Cancel),
    ]
}

/// The state of one property run: what exists, to pick changes from.
#[derive(Default)]
struct Model {
    tickets: Vec<String>,
    /// (order, live)
    orders: Vec<(String, bool)>,
    positions: i64,
    titles: u64,
}

struct World {
    app: TestApp,
    /// A gateway over the same database without the page cache: the page
    /// as computed from the database.
    uncached: TestApp,
    generation: Generation,
    users: Vec<(Client, String)>,
}

impl World {
    async fn apply(&self, model: &mut Model, change: &Change) {
        let pool = &self.app.pool;
        model.titles += 1;
        match *change {
            Change::Create => {
                let id = project_ticket(pool, &format!("ticket {}", model.titles)).await;
                model.tickets.push(id);
            }
            Change::Update(n) if !model.tickets.is_empty() => {
                let id = &model.tickets[n % model.tickets.len()];
                retitle(pool, id, &format!("title {}", model.titles)).await;
            }
            Change::Reserve(n, user) if !model.tickets.is_empty() => {
                let id = &model.tickets[n % model.tickets.len()];
                let available: bool =
                    sqlx::query_scalar("SELECT order_id IS NULL FROM ticket_views WHERE id = $1")
                        .bind(id)
                        .fetch_one(pool)
                        .await
                        .unwrap();
                if available {
                    model.positions += 1;
                    let order = project_order(pool, &self.users[user].1, id, model.positions).await;
                    model.orders.push((order, true));
                }
            }
            Change::Cancel(n) if !model.orders.is_empty() => {
                let index = n % model.orders.len();
                if model.orders[index].1 {
                    project_cancel(pool, &model.orders[index].0).await;
                    model.orders[index].1 = false;
                }
            }
            _ => {}
        }
        self.generation.bump();
    }

    /// Every page of interest, from memory (read twice, so the second is a
    /// hit) and from the database, compared.
    async fn check(&self, model: &Model) -> Result<(), TestCaseError> {
        let mut paths = vec!["/api/tickets".to_owned(), "/api/tickets?limit=2".to_owned()];
        if let Some(first) = model.tickets.first() {
            paths.push(format!("/api/tickets?limit=2&after={first}"));
            paths.push(format!("/api/tickets/{first}"));
        }
        if let Some(last) = model.tickets.last() {
            paths.push(format!("/api/tickets/{last}"));
        }
        paths.push("/api/orders".to_owned());
        paths.push("/api/orders?limit=1".to_owned());
        for (client, user) in &self.users {
            for path in &paths {
                let truth = get(client, self.uncached.url(path)).await;
                for _ in 0..2 {
                    let served = get(client, self.app.url(path)).await;
                    prop_assert_eq!(&served, &truth, "{} as {}", path, user);
                }
            }
        }
        Ok(())
    }
}

#[test]
fn a_page_from_memory_equals_the_page_from_the_database() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let world = runtime.block_on(async {
        let generation = Generation::default();
        let app = cached_app(&generation).await;
        let uncached = app.twin(|settings| settings.page_cache_bytes = 0).await;
        let mut users = Vec::new();
        for _ in 0..2 {
            users.push(app.signed_in_client().await);
        }
        World {
            app,
            uncached,
            generation,
            users,
        }
    });
    let config = ProptestConfig {
        cases: 8,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(changes in prop::collection::vec(change(), 1..16))| {
        runtime.block_on(async {
            // Each case starts from empty views.
            sqlx::query("TRUNCATE ticket_views, order_views")
                .execute(&world.app.pool)
                .await
                .unwrap();
            world.generation.bump();
            let mut model = Model::default();
            world.check(&model).await?;
            for change in &changes {
                world.apply(&mut model, change).await;
                world.check(&model).await?;
            }
            Ok::<(), TestCaseError>(())
        })?;
    });
    drop(world);
    drop(runtime);
}
