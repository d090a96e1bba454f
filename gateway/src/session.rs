//! Sessions are HS256 JWTs carried in the `session` cookie or as a Bearer
//! token. Anything that does not verify (tampered, expired, another
//! algorithm, `alg: none`) simply means "signed out".

use std::sync::Arc;
use std::time::Duration;

use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::HeaderMap;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::revocation::Revocations;

pub(crate) const COOKIE_NAME: &str = "session";

/// The contract's exact cookie-clearing header value.
pub(crate) const CLEARED_COOKIE: &str =
    "session=; path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT; httponly";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Claims {
    pub(crate) id: String,
    pub(crate) email: String,
    pub(crate) iat: i64,
    pub(crate) exp: i64,
    /// The session's id, which sign-out revokes. (Tokens issued before
    /// sessions had one cannot be revoked; they expire within the TTL.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) jti: Option<Uuid>,
}

pub(crate) struct SessionKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
    secure_cookie: bool,
    revocations: Arc<Revocations>,
}

impl SessionKeys {
    pub(crate) fn new(
        secret: &[u8],
        ttl: Duration,
        secure_cookie: bool,
        revocations: Arc<Revocations>,
    ) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "iat"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
            secure_cookie,
            revocations,
        }
    }

    pub(crate) fn revocations(&self) -> &Arc<Revocations> {
        &self.revocations
    }

    pub(crate) fn issue(
        &self,
        id: &str,
        email: &str,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let iat = chrono::Utc::now().timestamp();
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let claims = Claims {
            id: id.to_owned(),
            email: email.to_owned(),
            iat,
            exp: iat.saturating_add(ttl),
            jti: Some(Uuid::new_v4()),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }

    /// The `Set-Cookie` value that starts a session.
    pub(crate) fn cookie(&self, token: &str) -> String {
        let secure = if self.secure_cookie { "; secure" } else { "" };
        format!(
            "{COOKIE_NAME}={token}; path=/; max-age={}; samesite=lax; httponly{secure}",
            self.ttl.as_secs()
        )
    }

    /// The verified claims of the request's session, if it has a valid one.
    /// A Bearer token wins over the cookie.
    pub(crate) fn verify_request(&self, headers: &HeaderMap) -> Option<Claims> {
        let token = bearer_token(headers).or_else(|| cookie_token(headers))?;
        decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()
            .map(|data| data.claims)
            .filter(|claims| {
                !claims
                    .jti
                    .is_some_and(|jti| self.revocations.is_revoked(&jti))
            })
    }
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == COOKIE_NAME && !value.is_empty())
        .map(|(_, value)| value)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn revocations() -> Arc<Revocations> {
        let pool = sqlx::PgPool::connect_lazy("postgres://unused@127.0.0.1:1/unused").unwrap();
        Revocations::new(pool)
    }

    fn keys() -> SessionKeys {
        SessionKeys::new(
            b"test-secret",
            Duration::from_secs(60),
            false,
            revocations(),
        )
    }

    fn with_cookie(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let _ = headers.insert(COOKIE, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[tokio::test]
    async fn a_token_it_issued_verifies_from_the_cookie_and_the_bearer_header() {
        let keys = keys();
        let token = keys.issue("u1", "a@b.co").unwrap();
        let claims = keys
            .verify_request(&with_cookie(&format!("other=1; session={token}")))
            .unwrap();
        assert_eq!(
            (claims.id.as_str(), claims.email.as_str()),
            ("u1", "a@b.co")
        );
        let mut headers = HeaderMap::new();
        let _ = headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        assert!(keys.verify_request(&headers).is_some());
    }

    #[tokio::test]
    async fn a_token_signed_with_another_key_is_signed_out() {
        let other = SessionKeys::new(b"other", Duration::from_secs(60), false, revocations());
        let token = other.issue("u1", "a@b.co").unwrap();
        assert_eq!(
            keys().verify_request(&with_cookie(&format!("session={token}"))),
            None
        );
    }

    #[tokio::test]
    async fn an_expired_token_is_signed_out() {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            id: "u1".into(),
            email: "a@b.co".into(),
            iat: now - 120,
            exp: now - 60,
            jti: None,
        };
        let secret = EncodingKey::from_secret(b"test-secret");
        let token = encode(&Header::new(Algorithm::HS256), &claims, &secret).unwrap();
        assert_eq!(
            keys().verify_request(&with_cookie(&format!("session={token}"))),
            None
        );
    }
}
