//! Test output: quiet unless asked for.

use std::sync::Once;

/// Prints the logs of the code under test when `TEST_LOG` is set, filtered
/// by `RUST_LOG` or else `default_filter`; once per test binary.
pub fn init_test_logs(default_filter: &str) {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| default_filter.to_owned());
            tracing_subscriber::fmt().with_env_filter(filter).init();
        }
    });
}
