//! Sign-up, sign-in, sign-out and the current user, per the contract.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{ConnectInfo, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth_limits::AuthGuard;
use crate::current_user::MaybeSignedIn;
use crate::email::Email;
use crate::error::{ApiError, ErrorBody, ErrorEntry};
use crate::json_body::JsonBody;
use crate::session::{Claims, CLEARED_COOKIE};
use crate::state::AppState;
use crate::views::{CurrentUserView, Empty, SessionView, UserView};

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

// Validated by hand from the body (not deserialized), so that every failed
// rule is reported at once, in the contract's words.
/// `{email, password}` to sign up with.
#[derive(ToSchema)]
pub(crate) struct SignUp {
    /// An email address (trimmed; case-insensitive).
    #[schema(value_type = String, format = Email, max_length = 254, example = "buyer@example.com")]
    email: Email,
    /// 4 to 20 characters after trimming.
    #[schema(min_length = 4, max_length = 20, example = "password")]
    password: String,
}

impl SignUp {
    fn parse(body: &JsonBody) -> Result<Self, ApiError> {
        let mut errors = Vec::new();
        let email = parse_email(body, &mut errors);
        let password = trimmed_password(body).filter(|p| (4..=20).contains(&p.chars().count()));
        if password.is_none() {
            errors.push(ErrorEntry::field(
                "password",
                "Password must be between 4 and 20 characters",
            ));
        }
        match (email, password) {
            (Some(email), Some(password)) => Ok(SignUp {
                email,
                password: password.to_owned(),
            }),
            _ => Err(ApiError::Validation(errors)),
        }
    }
}

/// `{email, password}` to sign in with.
#[derive(ToSchema)]
pub(crate) struct SignIn {
    #[schema(value_type = String, format = Email, max_length = 254, example = "buyer@example.com")]
    email: Email,
    /// Trimmed; must not be empty.
    #[schema(min_length = 1, example = "password")]
    password: String,
}

impl SignIn {
    fn parse(body: &JsonBody) -> Result<Self, ApiError> {
        let mut errors = Vec::new();
        let email = parse_email(body, &mut errors);
        let password = trimmed_password(body).filter(|p| !p.is_empty());
        if password.is_none() {
            errors.push(ErrorEntry::field("password", "You must supply a password"));
        }
        match (email, password) {
            (Some(email), Some(password)) => Ok(SignIn {
                email,
                password: password.to_owned(),
            }),
            _ => Err(ApiError::Validation(errors)),
        }
    }
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
    let user = UserView {
        id: id.to_owned(),
        email: email.to_owned(),
    };
    Ok((status, [(SET_COOKIE, cookie)], Json(user)).into_response())
}

/// Sign up
///
/// Creates the account and signs it in.
#[utoipa::path(
    post,
    path = "/api/users/signup",
    operation_id = "signUp",
    tag = "users",
    request_body = SignUp,
    responses(
        (status = 201, description = "Signed up and signed in.", body = UserView, headers(
            ("Set-Cookie" = String, description = "The session: `session=<jwt>; path=/; max-age=<SESSION_TTL_SECONDS>; samesite=lax; httponly` (`; secure` with `SECURE_COOKIES`).")
        )),
        (status = 400, description = "\"Email must be valid\" (field `email`); \"Password must be between 4 and 20 characters\" (field `password`); \"Email in use\"; a body that is not a JSON object or not sent as `application/json`.", body = ErrorBody),
        (status = 429, description = "\"Too many attempts; retry later\": too many sign-ups and sign-ins from this client address (checked before validation) or for this email.", body = ErrorBody),
        (status = 503, description = "\"The service is busy; retry shortly\": password hashing or the database is saturated.", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn signup(
    State(state): State<Arc<AppState>>,
    Extension(guard): Extension<Arc<AuthGuard>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    guard.admit_client(&headers, peer)?;
    let SignUp { email, password } = SignUp::parse(&body)?;
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
    let hash = guard.passwords.hash(password).await?;
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

/// Sign in
#[utoipa::path(
    post,
    path = "/api/users/signin",
    operation_id = "signIn",
    tag = "users",
    request_body = SignIn,
    responses(
        (status = 200, description = "Signed in.", body = UserView, headers(
            ("Set-Cookie" = String, description = "The session, as on sign-up.")
        )),
        (status = 400, description = "\"Email must be valid\" (field `email`); \"You must supply a password\" (field `password`); \"Invalid credentials\" for an unknown email or a wrong password; a body that is not a JSON object or not sent as `application/json`.", body = ErrorBody),
        (status = 429, description = "\"Too many attempts; retry later\": as for sign-up (the two share their budgets).", body = ErrorBody),
        (status = 503, description = "\"The service is busy; retry shortly\": password hashing or the database is saturated.", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn signin(
    State(state): State<Arc<AppState>>,
    Extension(guard): Extension<Arc<AuthGuard>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Response, ApiError> {
    guard.admit_client(&headers, peer)?;
    let SignIn { email, password } = SignIn::parse(&body)?;
    guard.admit_email(&email)?;
    let user: Option<(Uuid, String, String)> =
        sqlx::query_as("SELECT id, email, password_hash FROM users WHERE lower(email) = $1")
            .bind(email.as_str())
            .fetch_optional(&state.pool)
            .await
            .context("Failed to look up the user")?;
    let stored_hash = user.as_ref().map(|(_, _, hash)| hash.clone());
    let valid = guard.passwords.verify(password, stored_hash).await?;
    match user {
        Some((id, email, _)) if valid => signed_in(&state, StatusCode::OK, &id.to_string(), &email),
        _ => Err(ApiError::BadRequest("Invalid credentials".to_owned())),
    }
}

/// Sign out
///
/// Clears the cookie and revokes the session server-side, so that a copy
/// of its token (a Bearer header, a stolen cookie) is signed out too.
#[utoipa::path(
    post,
    path = "/api/users/signout",
    operation_id = "signOut",
    tag = "users",
    security((), ("session" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Signed out (also when no one was signed in).", body = Empty, headers(
            ("Set-Cookie" = String, description = "`session=; path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT; httponly`")
        )),
        (status = 503, description = "\"The service is busy; retry shortly\": the revocation could not be stored.", body = ErrorBody),
    )
)]
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
        Json(Empty {}),
    )
        .into_response())
}

/// The current user
///
/// Whose session the request carries, if any; never 401.
#[utoipa::path(
    get,
    path = "/api/users/currentuser",
    operation_id = "currentUser",
    tag = "users",
    security((), ("session" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The session's user, or `null` when signed out.", body = CurrentUserView),
    )
)]
pub(crate) async fn current_user(MaybeSignedIn(claims): MaybeSignedIn) -> Json<CurrentUserView> {
    Json(CurrentUserView {
        current_user: claims.map(|c| SessionView {
            id: c.id,
            email: c.email,
            iat: c.iat,
        }),
    })
}
