use clap::Args;

use super::database::DatabaseArg;

#[derive(Debug, Args)]
pub(crate) struct Arg {
    #[command(flatten)]
    database: DatabaseArg,
}

impl Arg {
    pub(crate) async fn main(self) -> anyhow::Result<()> {
        let _pool = self.database.connect_and_migrate().await?;
        tracing::info!("database schema is up to date");
        Ok(())
    }
}
