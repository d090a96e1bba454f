//! Sign-out ends the session on the server: a copy of its token (a Bearer
//! header, a stolen cookie) is signed out too, while the user's other
//! sessions go on.

use reqwest::header::SET_COOKIE;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{body, spawn_app, unique_email, TestApp};

/// Signs in as `email` and returns the session token from the cookie.
async fn session_token(app: &TestApp, email: &str) -> String {
    let response = Client::new()
        .post(app.url("/api/users/signin"))
        .json(&json!({ "email": email, "password": "password" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    cookie
        .strip_prefix("session=")
        .and_then(|rest| rest.split(';').next())
        .expect("a session cookie")
        .to_owned()
}

async fn current_user(app: &TestApp, token: &str) -> Value {
    let response = Client::new()
        .get(app.url("/api/users/currentuser"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    body(response).await["currentUser"].clone()
}

#[tokio::test]
async fn a_signed_out_token_is_refused_and_other_sessions_go_on() {
    let app = spawn_app().await;
    let email = unique_email();
    let response = app.sign_up_as(&app.client, &email).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let phone = session_token(&app, &email).await;
    let laptop = session_token(&app, &email).await;
    assert!(current_user(&app, &phone).await.is_object());

    // Act: sign out on the phone (its Bearer token), as a client would.
    let signed_out = Client::new()
        .post(app.url("/api/users/signout"))
        .bearer_auth(&phone)
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(signed_out.status(), StatusCode::OK);
    assert_eq!(current_user(&app, &phone).await, Value::Null);
    let create = Client::new()
        .post(app.url("/api/tickets"))
        .bearer_auth(&phone)
        .json(&json!({ "title": "concert", "price": 10 }))
        .send()
        .await
        .unwrap();
    assert_eq!(create.status(), StatusCode::UNAUTHORIZED);
    assert!(
        current_user(&app, &laptop).await.is_object(),
        "the other session goes on"
    );
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM revoked_sessions")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        stored, 1,
        "the revocation is shared with the other gateways"
    );
}
