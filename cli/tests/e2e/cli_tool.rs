//! The CLI as an operator's tool: `probe` for container health checks,
//! `completions`, and help that lists the exit codes.

use std::process::{Command, Output};

use crate::helpers::{free_port, start_system};

fn ticketing(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ticketing"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

#[tokio::test]
async fn probe_exits_0_on_a_ready_server_and_1_otherwise() {
    let system = start_system().await;
    let ready = format!("{}/readyz", system.address);
    let closed = format!("http://127.0.0.1:{}/readyz", free_port());
    let missing = format!("{}/no-such-path", system.address);

    let (ready, closed, missing) = tokio::task::spawn_blocking(move || {
        (
            ticketing(&["probe", &ready]),
            ticketing(&["probe", &closed]),
            ticketing(&["probe", &missing]),
        )
    })
    .await
    .unwrap();

    assert_eq!(ready.status.code(), Some(0), "{ready:?}");
    assert_eq!(closed.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&closed.stderr).contains("did not answer"));
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("404"));
}

#[test]
fn completions_and_help_are_there_for_operators() {
    let bash = ticketing(&["completions", "bash"]);
    assert_eq!(bash.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&bash.stdout).contains("_ticketing()"));

    let help = ticketing(&["--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("Exit codes:"), "{help}");
    assert!(!help.contains("as they land"), "{help}");

    let usage = ticketing(&["no-such-subcommand"]);
    assert_eq!(usage.status.code(), Some(2));

    // `serve`'s many settings come in groups; `replay` lists only its own.
    let serve = ticketing(&["serve", "--help"]);
    let serve = String::from_utf8_lossy(&serve.stdout);
    for heading in [
        "Roles:",
        "HTTP listener:",
        "Sign-in protection:",
        "Relay (SERVE_ROLES has relay):",
    ] {
        assert!(serve.contains(heading), "{heading} in {serve}");
    }
    assert!(serve.contains("Examples:"), "{serve}");
    let replay = ticketing(&["replay", "--help"]);
    let replay = String::from_utf8_lossy(&replay.stdout);
    assert!(replay.contains("KAFKA_BROKERS"), "{replay}");
    assert!(!replay.contains("RELAY_BATCH_SIZE"), "{replay}");
    assert!(replay.contains("130"), "{replay}");
}

/// With METRICS_PORT, `/metrics` leaves the API port (which an ingress or
/// the internet reaches) for a port of its own.
#[tokio::test]
async fn metrics_move_to_their_own_port_when_asked() {
    let port = free_port().to_string();
    let system = crate::helpers::start_system_with(&[("METRICS_PORT", port.as_str())]).await;
    let client = reqwest::Client::new();

    let on_api = client
        .get(format!("{}/metrics", system.address))
        .send()
        .await
        .unwrap();
    let on_own = client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap();

    assert_eq!(on_api.status(), reqwest::StatusCode::NOT_FOUND);
    assert_eq!(on_own.status(), reqwest::StatusCode::OK);
    assert!(on_own
        .text()
        .await
        .unwrap()
        .contains("outbox_backlog_events"));
}

/// A deployment runs the API alone (`SERVE_ROLES=gateway`) and the workers
/// as processes of their own: commands are taken, nothing is projected.
#[tokio::test]
async fn serve_runs_only_the_roles_it_is_given() {
    let system = crate::helpers::start_system_with(&[("SERVE_ROLES", "gateway")]).await;
    let (client, _) = system.signed_in_client().await;
    let (ticket, _) = system.create_ticket(&client, "Gateway alone", 10.0).await;
    let pool = sqlx::PgPool::connect(system.database_url()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    let relayed: i64 = sqlx::query_scalar("SELECT count(*) FROM relay_cursor")
        .fetch_one(&pool)
        .await
        .unwrap();
    let projected: i64 = sqlx::query_scalar("SELECT count(*) FROM ticket_views WHERE id = $1")
        .bind(ticket["id"].as_str().unwrap())
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!((stored, relayed, projected), (1, 0, 0));
    pool.close().await;

    let refused = ticketing(&["serve", "--roles", "relay,projections"]);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("must include gateway"));
}
