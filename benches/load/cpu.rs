//! Where the machine's CPU went during a measured window, from `/proc`
//! (Linux; elsewhere nothing is reported). A write rate on a saturated
//! machine is its CPU divided by the CPU each write costs, so this is what
//! explains a ratio to pgbench: which process spends how much per write.
//!
//! The machine's busy time comes from `/proc/stat`; each process's user +
//! system time is read at both ends of the window and grouped: the server
//! the harness started, this load generator, PostgreSQL (every process
//! named `postgres`, with the backends that exited, which the postmaster's
//! reaped-children time holds), the pgbench client (this process's reaped
//! children), the broker when it runs on this machine (the process that
//! listens on the port of `KAFKA_BROKERS`' first address), and "other": the
//! rest of the busy time (the kernel's own work, any other process).

use std::collections::HashMap;
use std::time::Instant;

/// The groups, in the order they are printed.
const GROUPS: [&str; 6] = [
    "server",
    "PostgreSQL",
    "broker",
    "load generator",
    "pgbench client",
    "other",
];

/// A window being measured: from [`Window::start`] to [`Window::end`].
pub(crate) struct Window {
    start: Option<Snapshot>,
    broker: Option<u32>,
}

impl Window {
    pub(crate) fn start() -> Self {
        Self {
            start: snapshot(),
            broker: local_broker(),
        }
    }

    /// What the window cost, with `server` the pid of the server the
    /// harness started (if it did); `None` where `/proc` cannot be read.
    pub(crate) fn end(self, server: Option<u32>) -> Option<Usage> {
        let pids = Pids {
            server,
            broker: self.broker,
        };
        between(&self.start?, &snapshot()?, pids)
    }
}

/// The processes known by their pid rather than by their name.
#[derive(Clone, Copy)]
struct Pids {
    server: Option<u32>,
    broker: Option<u32>,
}

/// CPU time read at one instant, in the kernel's clock ticks.
struct Snapshot {
    at: Instant,
    /// All ticks of all CPUs (busy and idle), from `/proc/stat`.
    machine: u64,
    idle: u64,
    processes: HashMap<u32, Ticks>,
}

/// One process's ticks.
#[derive(Debug, PartialEq)]
struct Ticks {
    name: String,
    /// Its own user + system time.
    own: u64,
    /// Its exited children's, once it reaped them.
    children: u64,
}

/// What one window cost, per group, in CPU seconds.
#[derive(Clone, Debug)]
pub(crate) struct Usage {
    /// The share of the machine's CPU that was busy (0 to 1).
    pub(crate) busy: f64,
    /// CPU seconds by group; together, the machine's busy time ("other" is
    /// what the named groups leave of it).
    pub(crate) seconds: Vec<(&'static str, f64)>,
}

impl Usage {
    /// Microseconds of CPU per operation, total and per group (groups that
    /// spent under 1 µs per operation are left out).
    pub(crate) fn per_operation(&self, operations: u64) -> String {
        if operations == 0 {
            return "-".to_owned();
        }
        let us = |seconds: f64| seconds * 1e6 / operations as f64;
        let total: f64 = self.seconds.iter().map(|(_, s)| s).sum();
        let parts: Vec<String> = self
            .seconds
            .iter()
            .filter(|(_, s)| us(*s) >= 1.0)
            .map(|(group, s)| format!("{group} {:.0}", us(*s)))
            .collect();
        format!(
            "{:.0} µs ({}; machine {:.0} % busy)",
            us(total),
            parts.join(", "),
            self.busy * 100.0
        )
    }
}

/// The CPU times now, or `None` where `/proc` cannot be read.
fn snapshot() -> Option<Snapshot> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is
    // already in user).
    let machine = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);
    let processes = std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            Some((pid, process_ticks(&stat)?))
        })
        .collect();
    Some(Snapshot {
        at: Instant::now(),
        machine,
        idle,
        processes,
    })
}

/// A process's name and ticks, from its `/proc/<pid>/stat`. The name is
/// in parentheses and may hold spaces, so the fields after it are counted
/// from its closing one.
fn process_ticks(stat: &str) -> Option<Ticks> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // After the name, from field 3 (state): utime, stime, cutime, cstime
    // are fields 14 to 17.
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    Some(Ticks {
        name,
        own: field(14)? + field(15)?,
        children: field(16)? + field(17)?,
    })
}

/// The pid of the process listening on the port of the first address in
/// `KAFKA_BROKERS` (the server's default, `127.0.0.1:9092`, when unset), if
/// one on this machine does: the socket's inode from `/proc/net/tcp*`, then
/// the process holding it.
fn local_broker() -> Option<u32> {
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned());
    let port: u16 = brokers
        .split(',')
        .next()?
        .rsplit(':')
        .next()?
        .trim()
        .parse()
        .ok()?;
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| listening_inodes(&table, port))
        .collect();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let holds = std::fs::read_dir(entry.path().join("fd"))
                .ok()?
                .flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .any(|link| {
                    let link = link.to_string_lossy();
                    inodes
                        .iter()
                        .any(|inode| link == format!("socket:[{inode}]"))
                });
            holds.then_some(pid)
        })
}

/// The inodes of the sockets listening on `port` in a `/proc/net/tcp`
/// table (`local_address` is `hexaddress:hexport`, state `0A` is LISTEN).
fn listening_inodes(table: &str, port: u16) -> Vec<String> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields.get(1)?.rsplit(':').next()?;
            let listening =
                *fields.get(3)? == "0A" && u16::from_str_radix(local_port, 16).ok()? == port;
            listening.then(|| fields.get(9).map(|inode| (*inode).to_owned()))?
        })
        .collect()
}

/// The window from `before` to `after` (see [`Window::end`]).
fn between(before: &Snapshot, after: &Snapshot, pids: Pids) -> Option<Usage> {
    let machine = after.machine.checked_sub(before.machine)?;
    if machine == 0 {
        return None;
    }
    let idle = after.idle.saturating_sub(before.idle);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let wall = after.at.duration_since(before.at).as_secs_f64();
    // Ticks to CPU seconds without the kernel's tick rate: all the
    // machine's ticks are `cores` seconds per wall-clock second.
    let seconds_per_tick = wall * cores / machine as f64;
    let own_pid = std::process::id();
    let mut by_group: HashMap<&'static str, u64> = HashMap::new();
    for (pid, now) in &after.processes {
        let (own, children) = before
            .processes
            .get(pid)
            .filter(|earlier| earlier.name == now.name)
            .map_or((0, 0), |earlier| (earlier.own, earlier.children));
        let (group, reaped) = if Some(*pid) == pids.server {
            ("server", None)
        } else if Some(*pid) == pids.broker {
            ("broker", None)
        } else if *pid == own_pid {
            ("load generator", Some("pgbench client"))
        } else if now.name == "postgres" {
            ("PostgreSQL", Some("PostgreSQL"))
        } else {
            continue;
        };
        *by_group.entry(group).or_default() += now.own.saturating_sub(own);
        if let Some(reaped) = reaped {
            *by_group.entry(reaped).or_default() += now.children.saturating_sub(children);
        }
    }
    let busy = machine.saturating_sub(idle);
    let known: u64 = by_group.values().sum();
    let _ = by_group.insert("other", busy.saturating_sub(known));
    Some(Usage {
        busy: busy as f64 / machine as f64,
        seconds: GROUPS
            .iter()
            .map(|g| {
                (
                    *g,
                    by_group.get(g).copied().unwrap_or(0) as f64 * seconds_per_tick,
                )
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_with_spaces_and_parentheses_does_not_shift_the_fields() {
        let stat = "42 (tokio (rt) worker) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 4 0";
        assert_eq!(
            process_ticks(stat),
            Some(Ticks {
                name: "tokio (rt) worker".to_owned(),
                own: 325,
                children: 0,
            })
        );
    }

    /// A snapshot whose machine has spent `busy` ticks busy and as many idle.
    fn snapshot(at: Instant, busy: u64, processes: &[(u32, &str, u64, u64)]) -> Snapshot {
        Snapshot {
            at,
            machine: 2 * busy,
            idle: busy,
            processes: processes
                .iter()
                .map(|(pid, name, own, children)| {
                    let ticks = Ticks {
                        name: (*name).to_owned(),
                        own: *own,
                        children: *children,
                    };
                    (*pid, ticks)
                })
                .collect(),
        }
    }

    #[test]
    fn each_process_counts_in_its_group_and_the_rest_of_the_busy_time_is_other() {
        let start = Instant::now();
        let own = std::process::id();
        let before = snapshot(
            start,
            0,
            &[
                (7, "ticketing", 100, 0),
                (8, "postgres", 50, 500),
                (own, "loadtest", 10, 0),
            ],
        );
        // 1,000 busy ticks: server 300, postgres 100 of its own and 200 of a
        // backend that exited, this process 50 and its pgbench child 150, a
        // process that started in the window 40, the broker 30, and 130 the
        // kernel's.
        let after = snapshot(
            start + std::time::Duration::from_secs(1),
            1_000,
            &[
                (7, "ticketing", 400, 0),
                (8, "postgres", 150, 700),
                (own, "loadtest", 60, 150),
                (9, "tansu", 40, 0),
                (10, "kafka", 30, 0),
            ],
        );
        let pids = Pids {
            server: Some(7),
            broker: Some(10),
        };
        let usage = between(&before, &after, pids).expect("a window with ticks");
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        // 2,000 ticks in all (1,000 idle) are `cores` seconds.
        let ticks = |seconds: f64| (seconds * 2_000.0 / cores).round() as u64;
        let by_group: Vec<(&str, u64)> =
            usage.seconds.iter().map(|(g, s)| (*g, ticks(*s))).collect();
        assert_eq!(
            by_group,
            vec![
                ("server", 300),
                ("PostgreSQL", 300),
                ("broker", 30),
                ("load generator", 50),
                ("pgbench client", 150),
                ("other", 170),
            ]
        );
        assert!((usage.busy - 0.5).abs() < 1e-9, "{}", usage.busy);
    }

    #[test]
    fn only_a_listening_socket_on_the_port_is_the_brokers() {
        // Header, then: a connection to 9092 (state 01), the listener on
        // 127.0.0.1:9092 (0x2384), a listener on another port.
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:C350 0100007F:2384 01 00000000:00000000 00:00000000 00000000     0        0 111 1 0
   1: 0100007F:2384 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 222 1 0
   2: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 333 1 0";
        assert_eq!(listening_inodes(table, 9092), vec!["222".to_owned()]);
        assert!(listening_inodes(table, 9093).is_empty());
    }

    #[test]
    fn per_operation_divides_each_group_and_leaves_out_the_negligible() {
        let usage = Usage {
            busy: 0.95,
            seconds: vec![("server", 2.0), ("PostgreSQL", 1.0), ("other", 0.000_1)],
        };
        assert_eq!(
            usage.per_operation(10_000),
            "300 µs (server 200, PostgreSQL 100; machine 95 % busy)"
        );
        assert_eq!(usage.per_operation(0), "-");
    }
}
