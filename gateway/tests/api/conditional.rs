//! Conditional GETs and compression: 304 while an answer is unchanged, 200
//! with a new tag once it changed; who may cache what; large answers sent
//! compressed when accepted.

use reqwest::header::{CACHE_CONTROL, CONTENT_ENCODING, ETAG, IF_NONE_MATCH};
use reqwest::StatusCode;

use crate::helpers::{spawn_app, TestApp};

/// What the projection does when a ticket is created.
async fn project_ticket(app: &TestApp, title: &str) {
    project_ticket_with_id(app, &uuid::Uuid::new_v4().to_string(), title).await;
}

/// What the projection writes for a new ticket (none runs here).
async fn project_ticket_with_id(app: &TestApp, id: &str, title: &str) {
    sqlx::query(
        "INSERT INTO ticket_views (id, title, price_cents, user_id, version, last_sequence) \
         VALUES ($1, $2, 1000, 'seller', 0, 1)",
    )
    .bind(id)
    .bind(title)
    .execute(&app.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn an_unchanged_list_is_304_and_a_changed_one_is_200_with_a_new_tag() {
    let app = spawn_app().await;
    project_ticket(&app, "concert").await;
    let first = app
        .client
        .get(app.url("/api/tickets"))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()[CACHE_CONTROL], "public, no-cache");
    let tag = first.headers()[ETAG].to_str().unwrap().to_owned();

    let unchanged = app
        .client
        .get(app.url("/api/tickets"))
        .header(IF_NONE_MATCH, &tag)
        .send()
        .await
        .unwrap();
    assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(unchanged.headers()[ETAG], tag.as_str());
    assert!(unchanged.bytes().await.unwrap().is_empty());

    project_ticket(&app, "ballet").await;
    let changed = app
        .client
        .get(app.url("/api/tickets"))
        .header(IF_NONE_MATCH, &tag)
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), StatusCode::OK);
    assert_ne!(changed.headers()[ETAG], tag.as_str());
    let listed: Vec<serde_json::Value> = changed.json().await.unwrap();
    assert_eq!(listed.len(), 2);
}

#[tokio::test]
async fn a_users_orders_are_private_and_errors_carry_no_tag() {
    let app = spawn_app().await;
    let (buyer, _) = app.signed_in_client().await;
    let orders = buyer.get(app.url("/api/orders")).send().await.unwrap();
    assert_eq!(orders.status(), StatusCode::OK);
    assert_eq!(orders.headers()[CACHE_CONTROL], "private, no-cache");
    assert!(orders.headers().contains_key(ETAG));

    let missing = app
        .client
        .get(app.url(&format!("/api/tickets/{}", uuid::Uuid::new_v4())))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(!missing.headers().contains_key(ETAG));
}

#[tokio::test]
async fn a_large_list_is_sent_compressed_when_accepted() {
    let app = spawn_app().await;
    for n in 0..200 {
        project_ticket(&app, &format!("seat {n}")).await;
    }
    for encoding in ["gzip", "br", "zstd"] {
        let response = app
            .client
            .get(app.url("/api/tickets"))
            .header("accept-encoding", encoding)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_ENCODING], encoding);
        let compressed = response.bytes().await.unwrap().len();
        let plain = app
            .client
            .get(app.url("/api/tickets"))
            .send()
            .await
            .unwrap();
        assert!(!plain.headers().contains_key(CONTENT_ENCODING));
        let plain = plain.bytes().await.unwrap().len();
        assert!(
            compressed * 3 < plain,
            "{encoding}: {compressed} of {plain} bytes"
        );
    }
}

/// Compressing a small answer saves a few bytes and costs a compressor's
/// set-up (hundreds of kilobytes zeroed, per response): measured as a fifth
/// of the server's CPU under the create-ticket load. Small answers go as
/// they are, whatever the client accepts.
#[tokio::test]
async fn a_small_answer_is_sent_as_it_is_even_when_compression_is_accepted() {
    let app = spawn_app().await;
    let (seller, _) = app.signed_in_client().await;
    let created = seller
        .post(app.url("/api/tickets"))
        .header("accept-encoding", "gzip, br, zstd")
        .json(&serde_json::json!({ "title": "concert", "price": 10 }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    assert!(!created.headers().contains_key(CONTENT_ENCODING));
    let id = created.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    project_ticket_with_id(&app, &id, "concert").await;
    let shown = app
        .client
        .get(app.url(&format!("/api/tickets/{id}")))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(shown.status(), StatusCode::OK);
    assert!(!shown.headers().contains_key(CONTENT_ENCODING));
}
