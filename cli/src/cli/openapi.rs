//! `ticketing openapi generate|check`: the committed OpenAPI document of the
//! HTTP API (`docs/openapi.json`), kept equal to what the gateway's code
//! describes and serves at `GET /api/openapi.json`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub(crate) struct Arg {
    /// The committed document.
    #[arg(
        long,
        env = "OPENAPI_FILE",
        default_value = "docs/openapi.json",
        global = true
    )]
    file: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write the document the code describes.
    Generate,
    /// Fail (exit 1) when the committed document differs from the code's.
    Check,
}

impl Arg {
    pub(crate) fn main(self) -> anyhow::Result<()> {
        let generated =
            ticketing_gateway::openapi_json().context("Failed to render the OpenAPI document")?;
        let path = self.file.display();
        match self.command {
            Command::Generate => {
                std::fs::write(&self.file, generated)
                    .with_context(|| format!("Failed to write {path}"))?;
                eprintln!("wrote {path}");
                Ok(())
            }
            Command::Check => {
                let committed = std::fs::read_to_string(&self.file)
                    .with_context(|| format!("Failed to read {path}"))?;
                anyhow::ensure!(
                    committed == generated,
                    "{path} is out of date with the gateway's code: run `ticketing openapi generate`"
                );
                eprintln!("{path} is up to date");
                Ok(())
            }
        }
    }
}
