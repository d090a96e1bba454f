//! Passwords are stored as argon2id PHC strings. Hashing is deliberately slow,
//! so it runs on the blocking pool, never on the async workers, and at most
//! one hash per core runs at a time: hundreds of concurrent sign-ins would
//! otherwise start hundreds of CPU-bound threads that starve the async
//! workers (and their database connections) of CPU. The rest wait, in order,
//! on a semaphore.

use std::sync::LazyLock;

use anyhow::Context;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use tokio::sync::Semaphore;

static HASHING: LazyLock<Semaphore> = LazyLock::new(|| {
    Semaphore::new(std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get))
});

pub(crate) async fn hash(password: String) -> anyhow::Result<String> {
    let _permit = HASHING.acquire().await.context("password hashing closed")?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| anyhow::anyhow!("failed to hash the password: {e}"))
    })
    .await
    .context("password hashing task failed")?
}

/// Checks `password` against `stored`; with no stored hash (unknown user) it
/// still spends the same time, so response times do not reveal which emails
/// have accounts.
pub(crate) async fn verify(password: String, stored: Option<String>) -> anyhow::Result<bool> {
    let _permit = HASHING.acquire().await.context("password hashing closed")?;
    tokio::task::spawn_blocking(move || {
        let stored = stored.unwrap_or_else(|| DUMMY_HASH.to_owned());
        let parsed = PasswordHash::new(&stored)
            .map_err(|e| anyhow::anyhow!("stored password hash is malformed: {e}"))?;
        let matches = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        Ok(matches && stored != DUMMY_HASH)
    })
    .await
    .context("password verification task failed")?
}

/// An argon2id hash of a random password nobody knows, with default costs.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$gZiV/M1gPc22ElAH/Jh1Hw$CWOrkoo7oJBQ/iyh7uJ0LO2aLEfrHwTWllSAxT0zRno";

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let stored = hash("s3cret".to_owned()).await.unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(verify("s3cret".to_owned(), Some(stored.clone()))
            .await
            .unwrap());
        assert!(!verify("wrong".to_owned(), Some(stored)).await.unwrap());
    }

    #[tokio::test]
    async fn an_unknown_user_never_verifies() {
        assert!(!verify("anything".to_owned(), None).await.unwrap());
    }
}
