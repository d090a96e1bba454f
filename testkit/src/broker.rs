//! A Tansu broker of the test's own, for scenarios that stop, pause, kill
//! or restart it (the shared one on `KAFKA_BROKERS` must stay up for the
//! other tests). `make test` installs the binary in `.tools/bin/`.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// Memory storage: a killed broker comes back empty, topics included.
pub struct OwnedBroker {
    port: u16,
    /// The port clients are told to connect to: the broker's own, or a
    /// proxy's in front of it (a TLS terminator).
    advertised_port: u16,
    child: Option<Child>,
}

fn tansu() -> PathBuf {
    std::env::var_os("TANSU_BIN").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.tools/bin/tansu")),
        PathBuf::from,
    )
}

impl OwnedBroker {
    pub fn start() -> anyhow::Result<OwnedBroker> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        Self::start_advertising(port, port)
    }

    /// A broker listening on `port` that tells clients to reach it on
    /// `advertised_port` of 127.0.0.1 (e.g. a TLS terminator's).
    pub fn start_advertising(port: u16, advertised_port: u16) -> anyhow::Result<OwnedBroker> {
        let mut broker = OwnedBroker {
            port,
            advertised_port,
            child: None,
        };
        broker.launch()?;
        Ok(broker)
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) -> anyhow::Result<()> {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = format!("tcp://127.0.0.1:{}", self.advertised_port);
        let child = Command::new(tansu())
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &advertised])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot run {} (make test installs it)", tansu().display()))?;
        self.child = Some(child);
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(10),
                "tansu did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self.child.as_ref().context("broker not running")?.id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill {signal} {pid} failed");
        Ok(())
    }

    /// SIGSTOP: connections stay open, nothing is answered.
    pub fn pause(&self) -> anyhow::Result<()> {
        self.signal("-STOP")
    }

    pub fn resume(&self) -> anyhow::Result<()> {
        self.signal("-CONT")
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            let _ = child.wait()?;
        }
        Ok(())
    }

    /// A new, empty broker on the same port.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill()?;
        self.launch()
    }
}

impl Drop for OwnedBroker {
    fn drop(&mut self) {
        // A paused broker must be resumed to die promptly on every platform.
        let _ = self.resume();
        let _ = self.kill();
    }
}
