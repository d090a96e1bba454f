use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::Cli;

/// `ticketing completions <shell>`: print a completion script, e.g.
/// `ticketing completions bash > /etc/bash_completion.d/ticketing`.
#[derive(Debug, Args)]
pub(crate) struct Arg {
    shell: Shell,
}

impl Arg {
    pub(crate) fn main(self) {
        let mut command = Cli::command();
        clap_complete::generate(
            self.shell,
            &mut command,
            "ticketing",
            &mut std::io::stdout(),
        );
    }
}
