//! `ticketing`: one binary, one subcommand per role.

mod cli;
mod shutdown;
mod telemetry;

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    telemetry::init(&cli.log_format);
    cli.run().await
}
