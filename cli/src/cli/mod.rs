mod database;
mod environment;
mod migrate;
mod ops_server;
mod project;
mod relay;
mod replay;
mod saga;
mod schemas;
mod serve;

use clap::{Parser, Subcommand};

use environment::AppEnv;

/// An event-sourced ticket-resale backend: REST gateway, event store, and (as
/// they land) outbox relay, projections and sagas.
#[derive(Debug, Parser)]
#[command(name = "ticketing", version, about)]
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

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every role in one process (the default for local runs).
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
    /// Rebuild read models, republish events, re-drive dead letters.
    Replay(replay::Arg),
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
            Command::Replay(_) => "ticketing-replay",
        }
    }

    pub(crate) async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Serve(arg) => (*arg).main(self.app_env).await,
            Command::Migrate(arg) => arg.main().await,
            Command::Relay(arg) => arg.main().await,
            Command::Project(arg) => arg.main().await,
            Command::Saga(arg) => arg.main(self.app_env).await,
            Command::Schemas(arg) => arg.main().await,
            Command::Replay(arg) => arg.main().await,
        }
    }
}
