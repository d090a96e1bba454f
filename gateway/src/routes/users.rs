//! Sign-up, sign-in, sign-out and the current user, per the contract.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{ConnectInfo, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;
use uuid::Uuid;

use crate::auth_limits::AuthGuard;
use crate::current_user::MaybeSignedIn;
use crate::email::Email;
use crate::error::{ApiError, ErrorEntry};
use crate::json_body::JsonBody;
use crate::session::{Claims, CLEARED_COOKIE};
use crate::state::AppState;

const EMAIL_INVALID: &str = "Email must be valid";

fn parse_email(body: &JsonBody, errors: &mut Vec<ErrorEntry>) -> Option<Email> {
    let email = body.str("email").and_then(Email::parse);
    if email.is_none() {
        errors.push(ErrorEntry::field("email", EMAIL_INVALID));
    }
    email
}

/// The password as the original platform used it: trimmed.
fn trimmed_password(body: &JsonBody) -> Option<&str> {
    body.str("password").map(str::trim)
}

fn signed_in(
    state: &AppState,
    status: StatusCode,
    id: &str,
    email: &str,
) -> Result<Response, ApiError> {
    let token = state
        .sessions
        .issue(id, email)
        .context("Failed to sign the session token")?;
    let cookie = state.sessions.cookie(&token);
    Ok((
        status,
        [(SET_COOKIE, cookie)],
        Json(json!({ "id": id, "email": email })),
    )
        .into_response())
}

#[tracing::instrument(skip_all)]
pub(crate) async fn signup(
    State(state): State<Arc<AppState>>,
    Extension(guard): Extension<Arc<AuthGuard>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    guard.admit_client(&headers, peer)?;
    let mut errors = Vec::new();
    let email = parse_email(&body, &mut errors);
    let password = trimmed_password(&body).filter(|p| (4..=20).contains(&p.chars().count()));
    if password.is_none() {
        errors.push(ErrorEntry::field(
            "password",
            "Password must be between 4 and 20 characters",
        ));
    }
    let (Some(email), Some(password)) = (email, password) else {
        return Err(ApiError::Validation(errors));
    };
    guard.admit_email(&email)?;
    // Checked first only to spare the hashing cost; the unique index decides.
    let taken: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE lower(email) = $1)")
            .bind(email.as_str())
            .fetch_one(&state.pool)
            .await
            .context("Failed to look up the email")?;
    if taken {
        return Err(ApiError::BadRequest("Email in use".to_owned()));
    }
    let hash = guard.passwords.hash(password.to_owned()).await?;
    let id = Uuid::now_v7();
    let inserted = sqlx::query("INSERT INTO users (id, email, password_hash) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(email.as_str())
        .bind(hash)
        .execute(&state.pool)
        .await;
    match inserted {
        Ok(_) => signed_in(&state, StatusCode::CREATED, &id.to_string(), email.as_str()),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            Err(ApiError::BadRequest("Email in use".to_owned()))
        }
        Err(e) => Err(anyhow::Error::new(e)
            .context("Failed to insert the user")
            .into()),
    }
}

#[tracing::instrument(skip_all)]
pub(crate) async fn signin(
    State(state): State<Arc<AppState>>,
    Extension(guard): Extension<Arc<AuthGuard>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    guard.admit_client(&headers, peer)?;
    let mut errors = Vec::new();
    let email = parse_email(&body, &mut errors);
    let password = trimmed_password(&body).filter(|p| !p.is_empty());
    if password.is_none() {
        errors.push(ErrorEntry::field("password", "You must supply a password"));
    }
    let (Some(email), Some(password)) = (email, password) else {
        return Err(ApiError::Validation(errors));
    };
    guard.admit_email(&email)?;
    let user: Option<(Uuid, String, String)> =
        sqlx::query_as("SELECT id, email, password_hash FROM users WHERE lower(email) = $1")
            .bind(email.as_str())
            .fetch_optional(&state.pool)
            .await
            .context("Failed to look up the user")?;
    let stored_hash = user.as_ref().map(|(_, _, hash)| hash.clone());
    let valid = guard
        .passwords
        .verify(password.to_owned(), stored_hash)
        .await?;
    match user {
        Some((id, email, _)) if valid => signed_in(&state, StatusCode::OK, &id.to_string(), &email),
        _ => Err(ApiError::BadRequest("Invalid credentials".to_owned())),
    }
}

/// Clears the cookie and revokes the session server-side, so that a copy
/// of its token (a Bearer header, a stolen cookie) is signed out too.
pub(crate) async fn signout(
    State(state): State<Arc<AppState>>,
    MaybeSignedIn(claims): MaybeSignedIn,
) -> Result<Response, ApiError> {
    if let Some(Claims {
        jti: Some(jti),
        exp,
        ..
    }) = claims
    {
        state
            .sessions
            .revocations()
            .revoke(jti, exp)
            .await
            .context("Failed to revoke the session")?;
    }
    Ok((
        StatusCode::OK,
        [(SET_COOKIE, CLEARED_COOKIE)],
        Json(json!({})),
    )
        .into_response())
}

pub(crate) async fn current_user(MaybeSignedIn(claims): MaybeSignedIn) -> Json<serde_json::Value> {
    let current = claims.map(|c| json!({ "id": c.id, "email": c.email, "iat": c.iat }));
    Json(json!({ "currentUser": current }))
}
