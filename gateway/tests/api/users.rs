use jsonwebtoken::{encode, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_errors, body, new_client, spawn_app, unique_email, JWT_KEY};

#[tokio::test]
async fn signup_creates_the_user_and_starts_a_session() {
    let app = spawn_app().await;
    let email = unique_email();

    let response = app.sign_up_as(&app.client, &email).await;

    assert_eq!(response.status(), StatusCode::CREATED);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("session=ey"), "{cookie}");
    assert!(cookie.contains("httponly"), "{cookie}");
    assert!(
        !cookie.contains("secure"),
        "plain-http local runs must not set Secure: {cookie}"
    );
    let user = body(response).await;
    assert_eq!(user["email"], email);
    assert!(uuid::Uuid::parse_str(user["id"].as_str().unwrap()).is_ok());
    let me = body(app.get(&app.client, "/api/users/currentuser").await).await;
    assert_eq!(me["currentUser"]["id"], user["id"]);
}

#[tokio::test]
async fn signup_never_stores_the_password_in_clear() {
    let app = spawn_app().await;
    let email = unique_email();
    let _ = app
        .post(
            &app.client,
            "/api/users/signup",
            json!({ "email": email, "password": "hunter22" }),
        )
        .await;
    let stored: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE email = $1")
        .bind(&email)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(stored.starts_with("$argon2id$"), "{stored}");
    assert!(!stored.contains("hunter22"));
}

#[tokio::test]
async fn signup_rejects_invalid_input_with_one_entry_per_rule() {
    let app = spawn_app().await;
    let password_rule = "Password must be between 4 and 20 characters";
    let cases = [
        (
            json!({ "email": "not-an-email", "password": "password" }),
            vec![("Email must be valid", Some("email"))],
        ),
        (
            json!({ "password": "password" }),
            vec![("Email must be valid", Some("email"))],
        ),
        (
            json!({ "email": unique_email(), "password": "abc" }),
            vec![(password_rule, Some("password"))],
        ),
        (
            json!({ "email": unique_email(), "password": "  abc  " }),
            vec![(password_rule, Some("password"))],
        ),
        (
            json!({ "email": unique_email(), "password": "a".repeat(21) }),
            vec![(password_rule, Some("password"))],
        ),
        (
            json!({ "email": unique_email() }),
            vec![(password_rule, Some("password"))],
        ),
        (
            json!({ "email": 42, "password": 42 }),
            vec![
                ("Email must be valid", Some("email")),
                (password_rule, Some("password")),
            ],
        ),
        (
            json!({}),
            vec![
                ("Email must be valid", Some("email")),
                (password_rule, Some("password")),
            ],
        ),
    ];
    for (input, expected) in cases {
        let response = app
            .post(&app.client, "/api/users/signup", input.clone())
            .await;
        assert_errors(response, StatusCode::BAD_REQUEST, &expected).await;
    }
}

#[tokio::test]
async fn signup_with_an_email_in_use_is_rejected_whatever_its_case() {
    let app = spawn_app().await;
    let email = unique_email();
    let first = app.sign_up_as(&app.client, &email).await;
    assert_eq!(first.status(), StatusCode::CREATED);

    for again in [email.clone(), email.to_uppercase()] {
        let response = app.sign_up_as(&new_client(), &again).await;
        assert_errors(response, StatusCode::BAD_REQUEST, &[("Email in use", None)]).await;
    }
}

#[tokio::test]
async fn signin_with_valid_credentials_starts_a_session() {
    let app = spawn_app().await;
    let email = unique_email();
    let _ = app.sign_up_as(&new_client(), &email).await;

    let response = app
        .post(
            &app.client,
            "/api/users/signin",
            json!({ "email": email, "password": " password " }),
        )
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .starts_with("session="));
    assert_eq!(body(response).await["email"], email);
    let me = body(app.get(&app.client, "/api/users/currentuser").await).await;
    assert_eq!(me["currentUser"]["email"], email);
}

#[tokio::test]
async fn signin_rejects_bad_input_and_bad_credentials() {
    let app = spawn_app().await;
    let email = unique_email();
    let _ = app.sign_up_as(&new_client(), &email).await;
    let cases = [
        (
            json!({ "email": "nope", "password": "password" }),
            vec![("Email must be valid", Some("email"))],
        ),
        (
            json!({ "email": email, "password": "   " }),
            vec![("You must supply a password", Some("password"))],
        ),
        (
            json!({ "email": email }),
            vec![("You must supply a password", Some("password"))],
        ),
        (
            json!({ "email": unique_email(), "password": "password" }),
            vec![("Invalid credentials", None)],
        ),
        (
            json!({ "email": email, "password": "wrong-password" }),
            vec![("Invalid credentials", None)],
        ),
    ];
    for (input, expected) in cases {
        let response = app.post(&app.client, "/api/users/signin", input).await;
        assert!(response.headers().get("set-cookie").is_none());
        assert_errors(response, StatusCode::BAD_REQUEST, &expected).await;
    }
}

#[tokio::test]
async fn signout_clears_the_session_cookie() {
    let app = spawn_app().await;
    let _ = app.sign_up(&app.client).await;

    let response = app
        .client
        .post(app.url("/api/users/signout"))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["set-cookie"],
        "session=; path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT; httponly"
    );
    assert_eq!(body(response).await, json!({}));
    let me = body(app.get(&app.client, "/api/users/currentuser").await).await;
    assert_eq!(me, json!({ "currentUser": null }));
}

#[tokio::test]
async fn currentuser_reports_the_session_or_null() {
    let app = spawn_app().await;
    let signed_out = body(app.get(&new_client(), "/api/users/currentuser").await).await;
    assert_eq!(signed_out, json!({ "currentUser": null }));

    let id = app.sign_up(&app.client).await;
    let me = body(app.get(&app.client, "/api/users/currentuser").await).await;
    assert_eq!(me["currentUser"]["id"], id);
    assert!(me["currentUser"]["email"].is_string());
    assert!(me["currentUser"]["iat"].is_i64());
}

fn token(claims: serde_json::Value, key: &str) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn a_bearer_token_is_accepted_as_a_session() {
    let app = spawn_app().await;
    let now = chrono::Utc::now().timestamp();
    let jwt = token(
        json!({ "id": "u-1", "email": "a@b.co", "iat": now, "exp": now + 60 }),
        JWT_KEY,
    );
    let response = new_client()
        .get(app.url("/api/users/currentuser"))
        .bearer_auth(jwt)
        .send()
        .await
        .unwrap();
    assert_eq!(body(response).await["currentUser"]["id"], "u-1");
}

#[tokio::test]
async fn tampered_expired_foreign_and_unsigned_tokens_mean_signed_out() {
    let app = spawn_app().await;
    let now = chrono::Utc::now().timestamp();
    let claims = json!({ "id": "u-1", "email": "a@b.co", "iat": now, "exp": now + 60 });
    let valid = token(claims.clone(), JWT_KEY);
    let (head, rest) = valid.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let forged_payload = base64_url(
        &json!({ "id": "admin", "email": "a@b.co", "iat": now, "exp": now + 60 }).to_string(),
    );
    let unsigned_header = base64_url(r#"{"alg":"none","typ":"JWT"}"#);
    let tokens = [
        format!("{head}.{forged_payload}.{signature}"),
        token(
            json!({ "id": "u-1", "email": "a@b.co", "iat": now - 120, "exp": now - 60 }),
            JWT_KEY,
        ),
        token(claims, "some-other-key"),
        format!(
            "{unsigned_header}.{}.",
            base64_url(
                &json!({ "id": "u-1", "email": "a@b.co", "iat": now, "exp": now + 60 }).to_string()
            )
        ),
        "garbage".to_owned(),
    ];
    for jwt in tokens {
        for request in [
            new_client()
                .get(app.url("/api/users/currentuser"))
                .bearer_auth(&jwt),
            new_client()
                .get(app.url("/api/users/currentuser"))
                .header("cookie", format!("session={jwt}")),
        ] {
            let me = body(request.send().await.unwrap()).await;
            assert_eq!(me, json!({ "currentUser": null }), "token {jwt}");
        }
        let create = new_client()
            .post(app.url("/api/tickets"))
            .header("cookie", format!("session={jwt}"))
            .json(&json!({ "title": "t", "price": 10 }))
            .send()
            .await
            .unwrap();
        assert_errors(
            create,
            StatusCode::UNAUTHORIZED,
            &[("Not authorized", None)],
        )
        .await;
    }
}

/// Unpadded base64url, as JWT segments are encoded.
fn base64_url(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}
