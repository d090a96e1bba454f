//! `ticketing`: one binary, one subcommand per role.

mod cli;
mod shutdown;
mod telemetry;

use std::process::ExitCode;

use clap::Parser;

/// Many threads allocate and free small buffers per request and per event;
/// mimalloc's thread-local pools serve that with far fewer cycles than
/// glibc's arenas (measured: docs/benchmarks.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = cli::Cli::parse();
    let telemetry = telemetry::init(&cli.log_format, cli.service_name())?;
    let outcome = cli.run().await;
    // Spans are flushed before every exit, whatever the outcome.
    drop(telemetry);
    outcome
}
