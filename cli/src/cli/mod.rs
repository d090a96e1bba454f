mod completions;
mod database;
mod environment;
mod history;
mod migrate;
mod openapi;
mod ops_server;
mod probe;
mod project;
mod relay;
mod replay;
mod saga;
mod schemas;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use environment::AppEnv;

/// An event-sourced ticket-resale backend: REST gateway, event store, outbox
/// relay, projections and sagas, in one binary with one subcommand per role.
#[derive(Debug, Parser)]
#[command(
    name = "ticketing",
    version,
    about,
    after_help = AFTER_HELP,
    after_long_help = AFTER_HELP
)]
pub(crate) struct Cli {
    /// Log format: `text` (human-readable) or `json`.
    #[arg(long, env = "LOG_FORMAT", default_value = "text", global = true)]
    pub(crate) log_format: String,

    /// `production` refuses insecure settings at start-up (the development
    /// JWT key or a short one, cookies without `Secure`, the local payment
    /// provider); `development` logs them as warnings.
    #[arg(long, env = "APP_ENV", value_enum, default_value_t = AppEnv::Development, global = true)]
    app_env: AppEnv,

    #[command(subcommand)]
    command: Command,
}

const AFTER_HELP: &str = "\
Examples:
  ticketing serve                          every role in one process (local runs)
  ticketing migrate                        bring the schema up to date, then exit
  ticketing relay --migrate                one role, migrating first
  ticketing probe http://127.0.0.1:3000/readyz
  ticketing replay rebuild --view tickets
  ticketing history order:<id>             an order's events and its payments'
  ticketing completions bash

Every option can also be set by the environment variable shown in its help.

Exit codes:
  0  done (or stopped by SIGINT/SIGTERM after draining)
  1  failed: a setting refused, the database or broker unreachable at start-up,
     a probe that got no 2xx, a replay that could not finish, a history of
     an aggregate without events
  2  usage error: an unknown subcommand, option or value
  3  replay verify found read-model rows that differ from the event store
  130  replay interrupted by SIGINT/SIGTERM, its progress saved";

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP API, and beside it the roles SERVE_ROLES names (every
    /// one by default, for local runs).
    #[command(after_help = "Examples:
  ticketing serve                                  the API and every worker (local runs)
  SERVE_ROLES=gateway ticketing serve              the API alone; workers run as their own processes
  PORT=8080 PAYMENT_PROVIDER=local ticketing serve")]
    Serve(Box<serve::Arg>),
    /// Bring the database schema up to date, then exit.
    Migrate(migrate::Arg),
    /// Publish committed events to Kafka (one active relay per database).
    Relay(relay::Arg),
    /// Build the read models from the Kafka topics (workers share a group).
    Project(project::Arg),
    /// Fire due saga timers: order expiry, reservation repair, payment
    /// recovery (any number of workers share the timers).
    Saga(saga::Arg),
    /// Generate or check the committed JSON Schemas of every event.
    Schemas(schemas::Arg),
    /// Generate or check the committed OpenAPI document of the HTTP API.
    Openapi(openapi::Arg),
    /// Rebuild or verify read models, republish events, re-drive dead
    /// letters.
    #[command(after_help = "Examples:
  ticketing replay rebuild --view tickets         fold the tickets view again, swap it in
  ticketing replay verify --repair                compare every view row with the store, heal differences
  ticketing replay republish --from-position 1000 publish again from a position (same eventIds)
  ticketing replay dlq list --json                the parked messages, for scripts

Exit codes: 0 done, 1 failed, 2 usage, 3 verify found differences, 130 interrupted (progress saved)")]
    Replay(replay::Arg),
    /// Print an aggregate's events (an order's with its payments'), as the
    /// API's history endpoints list them.
    History(history::Arg),
    /// Exit 0 if a URL answers 2xx (container health checks).
    Probe(probe::Arg),
    /// Print a shell completion script.
    Completions(completions::Arg),
}

impl Cli {
    /// The service name of the role in traces (`OTEL_SERVICE_NAME` wins).
    pub(crate) fn service_name(&self) -> &'static str {
        match self.command {
            Command::Serve(_) => "ticketing",
            Command::Migrate(_) => "ticketing-migrate",
            Command::Relay(_) => "ticketing-relay",
            Command::Project(_) => "ticketing-projections",
            Command::Saga(_) => "ticketing-sagas",
            Command::Schemas(_) => "ticketing-schemas",
            Command::Openapi(_) => "ticketing-openapi",
            Command::Replay(_) => "ticketing-replay",
            Command::History(_) => "ticketing-history",
            Command::Probe(_) => "ticketing-probe",
            Command::Completions(_) => "ticketing-completions",
        }
    }

    /// Runs the subcommand; its exit code (see `--help`).
    pub(crate) async fn run(self) -> anyhow::Result<ExitCode> {
        let done = match self.command {
            Command::Replay(arg) => return arg.main().await,
            Command::Serve(arg) => (*arg).main(self.app_env).await,
            Command::Migrate(arg) => arg.main().await,
            Command::Relay(arg) => arg.main().await,
            Command::Project(arg) => arg.main().await,
            Command::Saga(arg) => arg.main(self.app_env).await,
            Command::Schemas(arg) => arg.main().await,
            Command::Openapi(arg) => arg.main(),
            Command::History(arg) => arg.main().await,
            Command::Probe(arg) => arg.main().await,
            Command::Completions(arg) => {
                arg.main();
                Ok(())
            }
        };
        done.map(|()| ExitCode::SUCCESS)
    }
}
