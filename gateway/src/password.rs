//! Passwords are stored as argon2id PHC strings. Hashing is deliberately slow,
//! so it runs on the blocking pool, never on the async workers, and at most
//! `concurrency` hashes (one per core by default) run at a time: hundreds of
//! concurrent sign-ins would otherwise start hundreds of CPU-bound threads
//! that starve the async workers (and their database connections) of CPU.
//! At most `waiting` more wait, in order; beyond that a request is refused at
//! once (503 with `Retry-After`) instead of queueing without limit behind a
//! flood, where every real sign-in would wait for all of it.

use std::sync::Arc;

use anyhow::Context;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum PasswordError {
    #[error("password hashing is saturated")]
    Busy,
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl From<PasswordError> for ApiError {
    fn from(error: PasswordError) -> Self {
        match error {
            PasswordError::Busy => {
                metrics::counter!("password_hashing_refused_total").increment(1);
                ApiError::Unavailable("The service is busy; retry shortly".to_owned())
            }
            PasswordError::Failed(error) => ApiError::Unexpected(error),
        }
    }
}

/// The bounded queue in front of the hashing threads.
pub(crate) struct PasswordQueue {
    /// Admitted requests: running plus waiting.
    admitted: Arc<Semaphore>,
    running: Arc<Semaphore>,
}

impl PasswordQueue {
    /// `concurrency` 0 means one per core.
    pub(crate) fn new(concurrency: usize, waiting: usize) -> Self {
        let concurrency = if concurrency == 0 {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        } else {
            concurrency
        };
        Self {
            admitted: Arc::new(Semaphore::new(concurrency.saturating_add(waiting))),
            running: Arc::new(Semaphore::new(concurrency)),
        }
    }

    /// A turn on the hashing threads, or `Busy` at once when the queue is full.
    async fn turn(&self) -> Result<(OwnedSemaphorePermit, OwnedSemaphorePermit), PasswordError> {
        let admitted = Arc::clone(&self.admitted)
            .try_acquire_owned()
            .map_err(|_| PasswordError::Busy)?;
        let running = Arc::clone(&self.running)
            .acquire_owned()
            .await
            .context("password hashing closed")?;
        Ok((admitted, running))
    }

    pub(crate) async fn hash(&self, password: String) -> Result<String, PasswordError> {
        let turn = self.turn().await?;
        let hashed = tokio::task::spawn_blocking(move || {
            // Held by the thread: a dropped request does not free its slot
            // while the hash still runs.
            let _turn = turn;
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map(|hash| hash.to_string())
                .map_err(|e| anyhow::anyhow!("failed to hash the password: {e}"))
        })
        .await
        .context("password hashing task failed")??;
        Ok(hashed)
    }

    /// Checks `password` against `stored`; with no stored hash (unknown user)
    /// it still spends the same time, so response times do not reveal which
    /// emails have accounts.
    pub(crate) async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, PasswordError> {
        let turn = self.turn().await?;
        let matches = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let stored = stored.unwrap_or_else(|| DUMMY_HASH.to_owned());
            let parsed = PasswordHash::new(&stored)
                .map_err(|e| anyhow::anyhow!("stored password hash is malformed: {e}"))?;
            let matches = Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok();
            anyhow::Ok(matches && stored != DUMMY_HASH)
        })
        .await
        .context("password verification task failed")??;
        Ok(matches)
    }
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
        let queue = PasswordQueue::new(0, 4);
        let stored = queue.hash("s3cret".to_owned()).await.unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(queue
            .verify("s3cret".to_owned(), Some(stored.clone()))
            .await
            .unwrap());
        assert!(!queue
            .verify("wrong".to_owned(), Some(stored))
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn an_unknown_user_never_verifies() {
        let queue = PasswordQueue::new(0, 4);
        assert!(!queue.verify("anything".to_owned(), None).await.unwrap());
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_frees_its_slot_after() {
        let queue = PasswordQueue::new(1, 0);
        let held = queue.turn().await.unwrap();
        assert!(matches!(
            queue.hash("s3cret".to_owned()).await,
            Err(PasswordError::Busy)
        ));
        drop(held);
        assert!(queue.hash("s3cret".to_owned()).await.is_ok());
    }
}
