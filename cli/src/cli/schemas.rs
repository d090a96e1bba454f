//! `ticketing schemas generate|check`: the committed JSON Schemas of every
//! event, kept in step with the Rust wire types and compatible with every
//! earlier version on the same topic major version.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use ticketing_schemas::registry::{self, asyncapi, COMPATIBILITY_MODE};

#[derive(Debug, Args)]
pub(crate) struct Arg {
    /// The schema folder: `<topic>/<eventType>/<version>.json` under it.
    #[arg(long, env = "SCHEMAS_DIR", default_value = "schemas", global = true)]
    dir: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write the schema of every event type at its current version.
    Generate {
        /// Replace a committed file whose content changed (only for a
        /// version that was never merged: merged versions are immutable).
        #[arg(long)]
        overwrite: bool,
    },
    /// Fail (exit 1) when the committed schemas differ from the Rust types
    /// or a new version is incompatible with an earlier one.
    Check,
}

impl Arg {
    pub(crate) async fn main(self) -> anyhow::Result<()> {
        let generated = registry::generate().context("Failed to generate the schemas")?;
        match self.command {
            Command::Generate { overwrite } => {
                let written = registry::write_generated(&self.dir, &generated, overwrite)
                    .context("Failed to write the schemas")?;
                for path in &written {
                    eprintln!("wrote {}", path.display());
                }
                // Derived from the schemas: always rewritten.
                let path = self.dir.join(asyncapi::FILE);
                std::fs::write(&path, asyncapi_text(&generated))
                    .with_context(|| format!("Failed to write {}", path.display()))?;
                eprintln!("wrote {}", path.display());
                eprintln!(
                    "{} schemas up to date in {} ({} written)",
                    generated.len(),
                    self.dir.display(),
                    written.len()
                );
                Ok(())
            }
            Command::Check => {
                let committed = registry::read_committed(&self.dir).with_context(|| {
                    format!("Failed to read the schemas in {}", self.dir.display())
                })?;
                let mut problems: Vec<String> = registry::check(&generated, &committed)
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                let path = self.dir.join(asyncapi::FILE);
                if std::fs::read_to_string(&path).ok() != Some(asyncapi_text(&generated)) {
                    problems.push(format!(
                        "{} is missing or out of date: run `ticketing schemas generate`",
                        path.display()
                    ));
                }
                if problems.is_empty() {
                    eprintln!(
                        "{} schemas checked in {}: up to date and {COMPATIBILITY_MODE} compatible",
                        committed.len(),
                        self.dir.display()
                    );
                    return Ok(());
                }
                for problem in &problems {
                    eprintln!("error: {problem}");
                }
                anyhow::bail!(
                    "{} schema problem(s) in {} ({COMPATIBILITY_MODE})",
                    problems.len(),
                    self.dir.display()
                )
            }
        }
    }
}

fn asyncapi_text(generated: &[registry::EventSchema]) -> String {
    registry::to_text(&asyncapi::document(generated))
}
