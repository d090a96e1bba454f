use std::time::Duration;

use anyhow::Context;
use clap::Args;

/// `ticketing probe`: exit 0 if `url` answers 2xx within the timeout, 1
/// otherwise. For container health checks: the image has no curl.
#[derive(Debug, Args)]
pub(crate) struct Arg {
    /// What to ask, e.g. a role's `/readyz` or `/healthz`.
    #[arg(default_value = "http://127.0.0.1:3000/readyz")]
    url: String,

    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 2_000)]
    timeout_ms: u64,
}

impl Arg {
    pub(crate) async fn main(self) -> anyhow::Result<()> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(self.timeout_ms))
            .build()
            .context("Failed to build the HTTP client")?;
        let response = client
            .get(&self.url)
            .send()
            .await
            .with_context(|| format!("{} did not answer", self.url))?;
        let status = response.status();
        anyhow::ensure!(status.is_success(), "{} answered {status}", self.url);
        Ok(())
    }
}
