//! `ticketing`: one binary, one subcommand per role.

mod cli;
mod shutdown;
mod telemetry;

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    let _telemetry = telemetry::init(&cli.log_format, cli.service_name())?;
    cli.run().await
}
