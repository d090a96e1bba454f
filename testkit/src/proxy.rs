use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// Request codes of the untagged messages a client may send before its
/// startup message (SSLRequest, GSSENCRequest).
const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;

/// A TCP proxy in front of one PostgreSQL server. See the crate docs.
pub struct PgProxy {
    address: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    LoseReply,
    Stall,
}

/// A fault waiting for its occurrence: `pass` more go through first.
#[derive(Debug, Clone, Copy)]
struct Armed {
    pass: usize,
    fault: Fault,
}

impl Armed {
    /// Counts one occurrence: whether it is the one the fault waits for.
    fn due(&mut self) -> bool {
        if self.pass == 0 {
            return true;
        }
        self.pass -= 1;
        false
    }
}

struct Shared {
    upstream: String,
    /// COMMITs still to pass before the next one meets the fault.
    armed: Mutex<Option<Armed>>,
    /// Text of the prepared statement whose next execution meets the
    /// fault, and how many executions still pass before that.
    statement: Mutex<Option<(String, Armed)>>,
    lost: AtomicUsize,
    stalled: AtomicUsize,
    /// Lets a stalled COMMIT go on to the server.
    release: Notify,
    /// While true, connections are reset on arrival, and turning it on cuts
    /// the open ones: the server is unreachable.
    refusing: watch::Sender<bool>,
}

impl PgProxy {
    /// Starts a proxy to the server of `database_url`, on a free local port.
    pub async fn start(database_url: &str) -> io::Result<Self> {
        let (_, host_port, _) = split_authority(database_url)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a postgres:// URL"))?;
        let upstream = if host_port.contains(':') {
            host_port.to_owned()
        } else {
            format!("{host_port}:5432")
        };
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            armed: Mutex::new(None),
            statement: Mutex::new(None),
            lost: AtomicUsize::new(0),
            stalled: AtomicUsize::new(0),
            release: Notify::new(),
            refusing: watch::channel(false).0,
        });
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(Self {
            address,
            shared,
            accept,
        })
    }

    /// `database_url` pointed at this proxy instead of its server.
    pub fn url(&self, database_url: &str) -> String {
        match split_authority(database_url) {
            Some((before, _, after)) => format!("{before}{}{after}", self.address),
            None => database_url.to_owned(),
        }
    }

    /// After `pass` more COMMITs go through normally, the next one reaches
    /// the server but its reply is dropped and the client's connection reset.
    pub fn lose_commit_reply(&self, pass: usize) {
        *lock(&self.shared.armed) = Some(Armed {
            pass,
            fault: Fault::LoseReply,
        });
    }

    /// After `pass` more executions go through normally, the next execution
    /// of a prepared statement whose text contains `text` reaches the server
    /// (to its Sync, which commits it when no transaction is open) but its
    /// reply is dropped and the client's connection reset. Counted with
    /// [`PgProxy::lost_replies`].
    pub fn lose_reply_to(&self, text: &str, pass: usize) {
        let armed = Armed {
            pass,
            fault: Fault::LoseReply,
        };
        *lock(&self.shared.statement) = Some((text.to_owned(), armed));
    }

    /// As [`PgProxy::stall_commit`], for the next execution of a prepared
    /// statement whose text contains `text` (held at its Sync, which
    /// commits it when no transaction is open). Counted with
    /// [`PgProxy::stalled_commits`].
    pub fn stall_statement(&self, text: &str, pass: usize) {
        let armed = Armed {
            pass,
            fault: Fault::Stall,
        };
        *lock(&self.shared.statement) = Some((text.to_owned(), armed));
    }

    /// COMMITs whose reply was dropped so far.
    pub fn lost_replies(&self) -> usize {
        self.shared.lost.load(Ordering::SeqCst)
    }

    /// After `pass` more COMMITs go through normally, the next one is held
    /// (its transaction stays open on the server, the client waits) until
    /// [`PgProxy::release_stalled`].
    pub fn stall_commit(&self, pass: usize) {
        *lock(&self.shared.armed) = Some(Armed {
            pass,
            fault: Fault::Stall,
        });
    }

    /// COMMITs (or statements) held so far.
    pub fn stalled_commits(&self) -> usize {
        self.shared.stalled.load(Ordering::SeqCst)
    }

    /// Sends the held COMMIT on to the server.
    pub fn release_stalled(&self) {
        self.shared.release.notify_one();
    }

    /// Makes the server unreachable (`true`: open connections are cut, new
    /// ones reset) or reachable again.
    pub fn refuse(&self, refusing: bool) {
        let _ = self.shared.refusing.send_replace(refusing);
    }
}

impl Drop for PgProxy {
    fn drop(&mut self) {
        self.accept.abort();
        // Connections still open are cut too.
        let _ = self.shared.refusing.send_replace(true);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `(up to the host, host[:port], from the path on)` of a URL.
fn split_authority(url: &str) -> Option<(&str, &str, &str)> {
    let start = url.find("://")? + 3;
    let end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| start + i);
    let host_start = url[start..end].rfind('@').map_or(start, |i| start + i + 1);
    Some((&url[..host_start], &url[host_start..end], &url[end..]))
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while let Ok((client, _)) = listener.accept().await {
        // Dropping the client's socket resets it (RST) instead of closing it.
        let _ = client.set_zero_linger();
        // Messages are forwarded one by one: no Nagle delay on each.
        let _ = client.set_nodelay(true);
        if *shared.refusing.borrow() {
            drop(client);
            continue;
        }
        drop(tokio::spawn(relay(client, Arc::clone(&shared))));
    }
}

/// Carries one connection until either side closes it, the proxy cuts it,
/// or an armed COMMIT's reply has been swallowed.
async fn relay(client: TcpStream, shared: Arc<Shared>) {
    let mut client = client;
    let Ok(mut server) = TcpStream::connect(&shared.upstream).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    if startup(&mut client, &mut server).await.is_err() {
        return;
    }
    let mut refusing = shared.refusing.subscribe();
    let doomed = Arc::new(AtomicBool::new(false));
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let client_side = Side {
        read: client_read,
        write: server_write,
    };
    let server_side = Side {
        read: server_read,
        write: client_write,
    };
    tokio::select! {
        _ = client_to_server(client_side, &shared, &doomed) => {}
        _ = server_to_client(server_side, &shared, &doomed) => {}
        _ = refusing.wait_for(|refusing| *refusing) => {}
    }
}

struct Side<R, W> {
    read: R,
    write: W,
}

type Pump = Side<OwnedReadHalf, OwnedWriteHalf>;

/// Forwards the untagged startup message, declining SSL/GSS requests on
/// the server's behalf so that the rest of the conversation is plain.
async fn startup(client: &mut TcpStream, server: &mut TcpStream) -> io::Result<()> {
    loop {
        let length = client.read_i32().await?;
        let mut body = vec![0; usize::try_from(length - 4).unwrap_or(0)];
        let _ = client.read_exact(&mut body).await?;
        let code = body
            .get(..4)
            .and_then(|code| code.try_into().ok())
            .map(i32::from_be_bytes);
        if length == 8 && matches!(code, Some(SSL_REQUEST | GSSENC_REQUEST)) {
            client.write_all(b"N").await?;
            continue;
        }
        let mut message = length.to_be_bytes().to_vec();
        message.extend_from_slice(&body);
        server.write_all(&message).await?;
        return Ok(());
    }
}

async fn client_to_server(mut side: Pump, shared: &Shared, doomed: &AtomicBool) -> io::Result<()> {
    // Prepared statements of this connection: name → text.
    let mut prepared: HashMap<Vec<u8>, String> = HashMap::new();
    // An execution that meets the statement fault was bound: the fault
    // strikes at its Sync.
    let mut bound = None;
    loop {
        let (tag, message) = read_message(&mut side.read).await?;
        let fault = match tag {
            b'P' => {
                let mut fields = message[5..].split(|b| *b == 0);
                let name = fields.next().unwrap_or_default().to_vec();
                let text = String::from_utf8_lossy(fields.next().unwrap_or_default());
                let _ = prepared.insert(name, text.into_owned());
                None
            }
            b'B' => {
                let mut fields = message[5..].split(|b| *b == 0);
                let _portal = fields.next();
                let name = fields.next().unwrap_or_default();
                let text = prepared.get(name).map_or("", String::as_str);
                let fault = take_if(&shared.statement, |(wanted, armed)| {
                    text.contains(wanted.as_str()) && armed.due()
                });
                bound = bound.or(fault.map(|(_, armed)| armed.fault));
                None
            }
            b'S' => bound.take(),
            b'Q' if is_commit(&message[5..]) => {
                take_if(&shared.armed, Armed::due).map(|armed| armed.fault)
            }
            _ => None,
        };
        match fault {
            Some(Fault::LoseReply) => doomed.store(true, Ordering::SeqCst),
            Some(Fault::Stall) => {
                let _ = shared.stalled.fetch_add(1, Ordering::SeqCst);
                shared.release.notified().await;
            }
            None => {}
        }
        side.write.write_all(&message).await?;
    }
}

async fn server_to_client(mut side: Pump, shared: &Shared, doomed: &AtomicBool) -> io::Result<()> {
    loop {
        let (tag, message) = read_message(&mut side.read).await?;
        if doomed.load(Ordering::SeqCst) {
            // Everything up to ReadyForQuery answers the doomed COMMIT or
            // execution: swallowed,
            // then the connection is cut.
            if tag == b'Z' {
                let _ = shared.lost.fetch_add(1, Ordering::SeqCst);
                return Ok(());
            }
            continue;
        }
        side.write.write_all(&message).await?;
    }
}

/// What `slot` holds, taken out if `due` says its time has come.
fn take_if<T>(slot: &Mutex<Option<T>>, due: impl FnOnce(&mut T) -> bool) -> Option<T> {
    let mut slot = lock(slot);
    if slot.as_mut().is_some_and(due) {
        slot.take()
    } else {
        None
    }
}

/// One tagged message, whole: its tag and its bytes (tag included).
async fn read_message(read: &mut OwnedReadHalf) -> io::Result<(u8, Vec<u8>)> {
    let tag = read.read_u8().await?;
    let length = read.read_i32().await?;
    let mut message = Vec::with_capacity(usize::try_from(length).unwrap_or(0) + 1);
    message.push(tag);
    message.extend_from_slice(&length.to_be_bytes());
    message.resize(message.capacity(), 0);
    let _ = read.read_exact(&mut message[5..]).await?;
    Ok((tag, message))
}

/// Whether a simple query's text (NUL-terminated) is a COMMIT.
fn is_commit(body: &[u8]) -> bool {
    let text = body.strip_suffix(&[0]).unwrap_or(body);
    let text = String::from_utf8_lossy(text);
    let text = text.trim().trim_end_matches(';').trim();
    text.eq_ignore_ascii_case("COMMIT") || text.eq_ignore_ascii_case("END")
}

#[cfg(test)]
mod tests {
    use super::{is_commit, split_authority};

    #[test]
    fn the_authority_is_found_with_or_without_user_and_port() {
        assert_eq!(
            split_authority("postgres://u@h:5432/db?x=1"),
            Some(("postgres://u@", "h:5432", "/db?x=1"))
        );
        assert_eq!(
            split_authority("postgres://h/db"),
            Some(("postgres://", "h", "/db"))
        );
        assert_eq!(split_authority("nonsense"), None);
    }

    #[test]
    fn commit_is_recognised_in_its_spellings() {
        assert!(is_commit(b"COMMIT\0"));
        assert!(is_commit(b" commit; \0"));
        assert!(!is_commit(b"COMMIT PREPARED 'x'\0"));
        assert!(!is_commit(b"SELECT 1\0"));
    }
}
