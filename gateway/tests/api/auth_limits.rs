//! Sign-in and sign-up limits: per client address (the socket's, or a
//! configured trusted header's) and per email, answered 429 with
//! `Retry-After`; and the bounded password-hashing queue, answered 503 at
//! once when full. Other client addresses come from other loopback source
//! addresses (127.0.0.x), as a real socket sees them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use reqwest::{Client, Response, StatusCode};
use serde_json::json;
use ticketing_gateway::{AuthLimits, ClientAddressSource, Rate};

use crate::helpers::{assert_errors, client_from, spawn_app_built, unique_email, TestApp};

async fn spawn_app_limited(limits: AuthLimits) -> TestApp {
    spawn_app_built(|_| {}, |app| app.with_auth_limits(limits)).await
}

const NO_LIMIT: Rate = Rate {
    per_minute: 0,
    burst: 0,
};

/// A budget of `burst` attempts that does not refill within a test.
const fn burst_of(burst: u32) -> Rate {
    Rate {
        per_minute: 1,
        burst,
    }
}

async fn sign_in(app: &TestApp, client: &Client, email: &str, password: &str) -> Response {
    app.post(
        client,
        "/api/users/signin",
        json!({ "email": email, "password": password }),
    )
    .await
}

async fn sign_up(app: &TestApp, client: &Client, email: &str) -> Response {
    app.post(
        client,
        "/api/users/signup",
        json!({ "email": email, "password": "password" }),
    )
    .await
}

/// Asserts a 429 in the contract's shape with a whole number of seconds in
/// `Retry-After`.
async fn assert_limited(response: Response) {
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .expect("a Retry-After in seconds");
    assert!(retry_after >= 1);
    assert_errors(
        response,
        StatusCode::TOO_MANY_REQUESTS,
        &[("Too many attempts; retry later", None)],
    )
    .await;
}

#[tokio::test]
async fn a_flood_of_bad_sign_ins_from_one_address_gets_429_while_another_address_signs_in() {
    let app = spawn_app_limited(AuthLimits {
        per_address: burst_of(3),
        per_email: NO_LIMIT,
        ..AuthLimits::default()
    })
    .await;
    let user = unique_email();
    let legitimate = client_from("127.0.0.2");
    assert_eq!(
        sign_up(&app, &legitimate, &user).await.status(),
        StatusCode::CREATED
    );

    let attacker = client_from("127.0.0.3");
    for _ in 0..3 {
        let response = sign_in(&app, &attacker, &unique_email(), "guess").await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }
    for _ in 0..5 {
        assert_limited(sign_in(&app, &attacker, &unique_email(), "guess").await).await;
        // Sign-up shares the budget.
        assert_limited(sign_up(&app, &attacker, &unique_email()).await).await;
    }

    let response = sign_in(&app, &legitimate, &user, "password").await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_flood_for_one_email_from_many_addresses_is_limited_per_email() {
    let app = spawn_app_limited(AuthLimits {
        per_address: NO_LIMIT,
        per_email: burst_of(3),
        ..AuthLimits::default()
    })
    .await;
    let victim = unique_email();
    // The sign-up spends the first attempt.
    assert_eq!(
        sign_up(&app, &client_from("127.0.0.2"), &victim)
            .await
            .status(),
        StatusCode::CREATED
    );

    let attackers: Vec<Client> = (10..20)
        .map(|host| client_from(&format!("127.0.0.{host}")))
        .collect();
    // Case and surrounding spaces do not make another email.
    let variants = [victim.to_uppercase(), format!("  {victim} ")];
    for (n, attacker) in attackers.iter().enumerate() {
        let response = sign_in(&app, attacker, &variants[n % 2], "guess").await;
        if n < 2 {
            assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        } else {
            assert_limited(response).await;
        }
    }

    // Other emails from the same addresses are not held back.
    let other = unique_email();
    assert_eq!(
        sign_up(&app, &attackers[0], &other).await.status(),
        StatusCode::CREATED
    );
    let response = sign_in(&app, &attackers[1], &other, "password").await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn forwarded_addresses_are_ignored_unless_a_trusted_header_is_configured() {
    let app = spawn_app_limited(AuthLimits {
        per_address: burst_of(2),
        per_email: NO_LIMIT,
        ..AuthLimits::default()
    })
    .await;
    let client = client_from("127.0.0.2");
    let mut statuses = Vec::new();
    for n in 0..6 {
        let response = client
            .post(app.url("/api/users/signin"))
            .header("x-forwarded-for", format!("198.51.100.{n}"))
            .header("x-real-ip", format!("198.51.100.{n}"))
            .json(&json!({ "email": unique_email(), "password": "guess" }))
            .send()
            .await
            .unwrap();
        statuses.push(response.status());
    }
    assert_eq!(
        statuses,
        [
            [StatusCode::BAD_REQUEST; 2].as_slice(),
            &[StatusCode::TOO_MANY_REQUESTS; 4]
        ]
        .concat()
    );
}

#[tokio::test]
async fn behind_a_proxy_the_right_most_value_of_the_trusted_header_is_the_client() {
    let app = spawn_app_limited(AuthLimits {
        per_address: burst_of(2),
        per_email: NO_LIMIT,
        client_address: ClientAddressSource {
            trusted_header: Some("x-forwarded-for".parse().unwrap()),
        },
        ..AuthLimits::default()
    })
    .await;
    // Every request comes through the one proxy (the same socket address).
    let proxy = client_from("127.0.0.2");
    let sign_in_as = |forwarded: &'static str| {
        proxy
            .post(app.url("/api/users/signin"))
            .header("x-forwarded-for", forwarded)
            .json(&json!({ "email": unique_email(), "password": "guess" }))
            .send()
    };

    // What the client put left of the proxy's entry changes nothing.
    for forwarded in ["203.0.113.5", "1.1.1.1, 203.0.113.5"] {
        let response = sign_in_as(forwarded).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }
    assert_limited(sign_in_as("9.9.9.9, 203.0.113.5").await.unwrap()).await;

    // Another client behind the same proxy has its own budget.
    let response = sign_in_as("203.0.113.5, 198.51.100.7").await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_password_queue_answers_503_at_once_and_recovers() {
    let app = spawn_app_limited(AuthLimits {
        hashing_concurrency: 1,
        hashing_queue: 0,
        ..AuthLimits::default()
    })
    .await;
    let user = unique_email();
    let client = client_from("127.0.0.2");
    assert_eq!(
        sign_up(&app, &client, &user).await.status(),
        StatusCode::CREATED
    );

    // Each request's place in the order the answers arrived.
    let arrived = Arc::new(AtomicUsize::new(0));
    let attempts = (0..8).map(|_| {
        let (app, arrived) = (&app, Arc::clone(&arrived));
        async move {
            let response = sign_in(app, &client_from("127.0.0.3"), &unique_email(), "guess").await;
            (arrived.fetch_add(1, Ordering::SeqCst), response)
        }
    });
    let answers = futures::future::join_all(attempts).await;

    let mut refused = Vec::new();
    let mut hashed = Vec::new();
    for (place, response) in answers {
        match response.status() {
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(
                    response.headers().get("retry-after").map(|v| v.as_bytes()),
                    Some(&b"1"[..])
                );
                assert_errors(
                    response,
                    StatusCode::SERVICE_UNAVAILABLE,
                    &[("The service is busy; retry shortly", None)],
                )
                .await;
                refused.push(place);
            }
            StatusCode::BAD_REQUEST => hashed.push(place),
            other => panic!("unexpected {other}"),
        }
    }
    assert!(!refused.is_empty(), "the queue never filled");
    assert!(!hashed.is_empty(), "nothing was hashed");
    // Refused without waiting for the hashing ahead of it: the first refusal
    // arrived before the last hashed answer.
    assert!(
        refused.iter().min() < hashed.iter().max(),
        "refused {refused:?}, hashed {hashed:?}"
    );

    let response = sign_in(&app, &client, &user, "password").await;
    assert_eq!(response.status(), StatusCode::OK);
}
