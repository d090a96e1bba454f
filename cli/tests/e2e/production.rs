//! Production mode (`APP_ENV=production`): the real binary refuses to start
//! on each insecure setting, naming it, and starts when every setting is
//! safe. Outside production, the local payment provider is still chosen
//! explicitly, never by a missing key.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use ticketing_eventstore::ScratchDatabase;
use ticketing_sagas::stripe_stand_in::{StripeStandIn, SECRET_KEY};

use crate::helpers::{free_port, start_system_with};

const STRONG_KEY: &str = "9f2c4e7a1b3d5f6081a2c4e6f8091b3d";

/// Settings production accepts; each case below spoils one.
fn safe() -> Vec<(&'static str, &'static str)> {
    vec![
        ("APP_ENV", "production"),
        ("JWT_KEY", STRONG_KEY),
        ("SECURE_COOKIES", "true"),
        ("PAYMENT_PROVIDER", "stripe"),
        ("STRIPE_SECRET_KEY", SECRET_KEY),
    ]
}

fn with(
    mut env: Vec<(&'static str, &'static str)>,
    name: &str,
    value: Option<&'static str>,
) -> Vec<(&'static str, &'static str)> {
    env.retain(|(n, _)| *n != name);
    if let Some(value) = value {
        env.push((leak(name), value));
    }
    env
}

fn leak(name: &str) -> &'static str {
    Box::leak(name.to_owned().into_boxed_str())
}

/// Runs `ticketing <role>` with exactly these settings (of the ones checked)
/// and returns its stderr once it exited, failing if it is still running
/// after 30 s (it would be serving) or exited successfully.
fn refused(role: &str, database_url: &str, env: &[(&str, &str)]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ticketing"));
    let _ = command
        .arg(role)
        .env("DATABASE_URL", database_url)
        .env("PORT", free_port().to_string())
        .env("METRICS_PORT", free_port().to_string())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for name in [
        "APP_ENV",
        "JWT_KEY",
        "SECURE_COOKIES",
        "PAYMENT_PROVIDER",
        "STRIPE_SECRET_KEY",
    ] {
        let _ = command.env_remove(name);
    }
    for (name, value) in env {
        let _ = command.env(name, value);
    }
    let mut child = command.spawn().unwrap();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let output = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            assert!(!status.success(), "{role} {env:?} exited successfully");
            return stderr;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("{role} started with {env:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn production_refuses_each_insecure_setting_and_names_it() {
    let database = ScratchDatabase::create("ticketing_e2e", 2).await.unwrap();
    let url = database.url().to_owned();
    let cases = [
        (
            "serve",
            with(safe(), "JWT_KEY", None),
            "published development default",
        ),
        (
            "serve",
            with(safe(), "JWT_KEY", Some("")),
            "shorter than 32 bytes",
        ),
        (
            "serve",
            with(safe(), "JWT_KEY", Some("0123456789abcdef0123456789abcde")),
            "shorter than 32 bytes",
        ),
        (
            "serve",
            with(safe(), "STRIPE_SECRET_KEY", None),
            "STRIPE_SECRET_KEY is required",
        ),
        (
            "serve",
            with(safe(), "STRIPE_SECRET_KEY", Some(" ")),
            "STRIPE_SECRET_KEY is required",
        ),
        (
            "serve",
            with(safe(), "PAYMENT_PROVIDER", Some("local")),
            "PAYMENT_PROVIDER=local",
        ),
        (
            "serve",
            with(safe(), "SECURE_COOKIES", None),
            "SECURE_COOKIES is off",
        ),
        (
            "saga",
            with(safe(), "PAYMENT_PROVIDER", Some("local")),
            "PAYMENT_PROVIDER=local",
        ),
        (
            "saga",
            with(safe(), "STRIPE_SECRET_KEY", None),
            "STRIPE_SECRET_KEY is required",
        ),
        // Not production: still no silent fallback to the local provider.
        (
            "serve",
            with(safe(), "APP_ENV", None)
                .into_iter()
                .filter(|(n, _)| *n != "STRIPE_SECRET_KEY")
                .collect(),
            "STRIPE_SECRET_KEY is required",
        ),
    ];
    tokio::task::spawn_blocking(move || {
        for (role, env, reason) in cases {
            let stderr = refused(role, &url, &env);
            assert!(
                stderr.contains(reason),
                "{role} {env:?}: expected {reason:?} in:\n{stderr}"
            );
        }
    })
    .await
    .unwrap();
    database.remove().await.unwrap();
}

#[tokio::test]
async fn production_starts_with_safe_settings() {
    let stripe = StripeStandIn::start().await.unwrap();
    let base = stripe.base_url();
    let mut env = safe();
    env.push(("STRIPE_API_BASE", leak(&base)));

    let system = start_system_with(&env).await;

    let response = reqwest::get(format!("{}/api/tickets", system.address))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
