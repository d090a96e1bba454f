//! A host that vanishes without a FIN or an RST, as far as PostgreSQL can
//! tell: every packet to and from one local TCP port is dropped by the
//! kernel (iptables on the loopback interface). Killing a process cannot
//! show this: its kernel closes the socket, and the server sees at once.
//!
//! Needs root and `iptables` (`make test` installs it through
//! `deploy/local/tools.sh`).

use std::process::Command;

use anyhow::Context;

/// Drops the loopback traffic of one TCP port until dropped itself.
pub(crate) struct Blackhole {
    port: u16,
}

impl Blackhole {
    pub(crate) fn port(port: u16) -> anyhow::Result<Self> {
        let hole = Self { port };
        for rule in hole.rules() {
            iptables("-I", &rule)?;
        }
        Ok(hole)
    }

    fn rules(&self) -> [Vec<String>; 2] {
        let port = self.port.to_string();
        let rule = |direction: &str| {
            [
                "INPUT", "-i", "lo", "-p", "tcp", direction, &port, "-j", "DROP",
            ]
            .map(str::to_owned)
            .to_vec()
        };
        [rule("--sport"), rule("--dport")]
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        for rule in self.rules() {
            if let Err(error) = iptables("-D", &rule) {
                eprintln!(
                    "could not remove the blackhole on port {}: {error:#}",
                    self.port
                );
            }
        }
    }
}

fn iptables(action: &str, rule: &[String]) -> anyhow::Result<()> {
    let status = Command::new("iptables")
        .arg("-w")
        .arg(action)
        .args(rule)
        .status()
        .context("cannot run iptables (run `bash deploy/local/tools.sh ensure`; it needs root)")?;
    anyhow::ensure!(status.success(), "iptables {action} {rule:?}: {status}");
    Ok(())
}
