//! Extractors for the caller's identity. Handlers list `SignedIn` before the
//! body, so authentication (401) is always checked before validation (400).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::error::ApiError;
use crate::session::Claims;
use crate::state::AppState;

/// A request with a valid session; anything else is rejected with 401.
pub(crate) struct SignedIn(pub(crate) Claims);

/// The session of the request, if it has a valid one.
pub(crate) struct MaybeSignedIn(pub(crate) Option<Claims>);

impl FromRequestParts<Arc<AppState>> for MaybeSignedIn {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        Ok(MaybeSignedIn(state.sessions.verify_request(&parts.headers)))
    }
}

impl FromRequestParts<Arc<AppState>> for SignedIn {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        state
            .sessions
            .verify_request(&parts.headers)
            .map(SignedIn)
            .ok_or(ApiError::NotAuthorized)
    }
}
