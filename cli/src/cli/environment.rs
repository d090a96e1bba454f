//! Production mode (`APP_ENV=production`): settings that are fine on a
//! laptop and dangerous in production stop the process at start-up, all
//! named at once, before anything is served. In development they are
//! logged as warnings, so they never pass silently.

use clap::ValueEnum;

/// Where the process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum AppEnv {
    Development,
    Production,
}

/// The JWT key `serve` uses when none is set: published in this
/// repository, so anyone could sign a session with it.
pub(crate) const DEVELOPMENT_JWT_KEY: &str = "local-development-only-jwt-key";

/// The shortest JWT key production accepts: HS256 keys should carry at
/// least the hash's 256 bits.
pub(crate) const MIN_JWT_KEY_BYTES: usize = 32;

/// The insecure settings found while checking a command's configuration.
#[derive(Debug, Default)]
pub(crate) struct Insecure(Vec<&'static str>);

impl Insecure {
    /// Notes `why` when `insecure` holds.
    pub(crate) fn check(&mut self, insecure: bool, why: &'static str) -> &mut Self {
        if insecure {
            self.0.push(why);
        }
        self
    }

    /// The JWT key checks shared by every command that signs sessions.
    pub(crate) fn jwt_key(&mut self, key: &str) -> &mut Self {
        self.check(
            key == DEVELOPMENT_JWT_KEY,
            "JWT_KEY is the published development default: anyone could sign a session",
        )
        .check(
            key.len() < MIN_JWT_KEY_BYTES,
            "JWT_KEY is shorter than 32 bytes",
        )
    }

    /// Refuses (production) or warns about (development) what was found.
    pub(crate) fn enforce(&self, env: AppEnv) -> anyhow::Result<()> {
        match env {
            AppEnv::Production if !self.0.is_empty() => anyhow::bail!(
                "refusing to start with insecure settings (APP_ENV=production):\n  - {}",
                self.0.join("\n  - ")
            ),
            AppEnv::Production => Ok(()),
            AppEnv::Development => {
                for why in &self.0 {
                    tracing::warn!("insecure setting (refused with APP_ENV=production): {why}");
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_names_every_insecure_setting_and_development_only_warns() {
        let mut insecure = Insecure::default();
        let _ = insecure
            .jwt_key(DEVELOPMENT_JWT_KEY)
            .check(true, "SECURE_COOKIES is off");

        let refused = insecure.enforce(AppEnv::Production);

        let message = format!("{:#}", refused.expect_err("production refuses"));
        assert!(
            message.contains("published development default"),
            "{message}"
        );
        assert!(message.contains("shorter than 32 bytes"), "{message}");
        assert!(message.contains("SECURE_COOKIES is off"), "{message}");
        assert!(insecure.enforce(AppEnv::Development).is_ok());
    }

    #[test]
    fn a_long_random_key_passes_production() {
        let mut insecure = Insecure::default();
        let _ = insecure.jwt_key("0123456789abcdef0123456789abcdef");

        assert!(insecure.enforce(AppEnv::Production).is_ok());
    }
}
