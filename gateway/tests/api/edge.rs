//! The edge over raw TCP, as slow or greedy clients drive it: a client that
//! stalls in its headers, idles or dribbles its body is cut off after its
//! timeout while others are served; connections beyond
//! the cap wait until one closes. Outcomes are bounded (within ten times the
//! configured timeout), never timed.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use ticketing_gateway::HttpLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{spawn_app_built, TestApp};

async fn spawn_app_limited(limits: HttpLimits) -> TestApp {
    spawn_app_built(|_| {}, |app| app.with_http_limits(limits)).await
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.socket_address())
        .await
        .expect("connect to the server")
}

/// Whether the server closes `stream` within `within`, reading (and
/// discarding) whatever it sends first. A reset counts as closed.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut sink = Vec::new();
    tokio::time::timeout(within, stream.read_to_end(&mut sink))
        .await
        .is_ok()
}

/// Reads one response: its status and its JSON body (`Null` if empty).
async fn read_response(stream: &mut TcpStream) -> (u16, Value) {
    let mut received = Vec::new();
    let mut chunk = [0_u8; 4096];
    loop {
        if let Some(end) = find(&received, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
            let status: u16 = head[9..12].parse().expect("a status code");
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map_or(0, |value| value.trim().parse().expect("a length"));
            let body_start = end + 4;
            if received.len() >= body_start + length {
                let body = &received[body_start..body_start + length];
                let json = if body.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(body).expect("a JSON body")
                };
                return (status, json);
            }
        }
        let read = stream.read(&mut chunk).await.expect("read the response");
        assert!(read > 0, "closed before a full response: {received:?}");
        received.extend_from_slice(&chunk[..read]);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n";

#[tokio::test]
async fn a_client_stalling_in_its_headers_is_cut_off_while_others_are_served() {
    let header_timeout = Duration::from_millis(300);
    let app = spawn_app_limited(HttpLimits {
        header_timeout,
        idle_timeout: Duration::from_secs(60),
        ..HttpLimits::default()
    })
    .await;

    let mut half_line = connect(&app).await;
    half_line.write_all(b"GET /healthz HT").await.unwrap();

    // Served meanwhile, on connections of its own.
    for _ in 0..3 {
        let response = app.get(&app.client, "/healthz").await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    assert!(
        closed_within(&mut half_line, header_timeout * 10).await,
        "a half-sent header line held its connection"
    );
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let idle_timeout = Duration::from_millis(300);
    let app = spawn_app_limited(HttpLimits {
        idle_timeout,
        ..HttpLimits::default()
    })
    .await;

    let mut silent = connect(&app).await;
    let mut kept_alive = connect(&app).await;
    kept_alive.write_all(HEALTHZ).await.unwrap();
    let (status, _) = read_response(&mut kept_alive).await;
    assert_eq!(status, 200);

    // Keep-alive: the connection stays open for a next request, but not
    // for good; nor does one that never sent anything.
    assert!(
        closed_within(&mut kept_alive, idle_timeout * 10).await,
        "an idle keep-alive connection was kept"
    );
    assert!(
        closed_within(&mut silent, idle_timeout * 10).await,
        "a connection that sent nothing was kept"
    );
}

#[tokio::test]
async fn a_keep_alive_connection_idle_longer_than_the_header_timeout_is_still_served() {
    let header_timeout = Duration::from_millis(200);
    let app = spawn_app_limited(HttpLimits {
        header_timeout,
        idle_timeout: Duration::from_secs(30),
        ..HttpLimits::default()
    })
    .await;

    let mut stream = connect(&app).await;
    stream.write_all(HEALTHZ).await.unwrap();
    assert_eq!(read_response(&mut stream).await.0, 200);
    tokio::time::sleep(header_timeout * 5).await;
    stream.write_all(HEALTHZ).await.unwrap();
    assert_eq!(read_response(&mut stream).await.0, 200);

    // Each request's headers get the header timeout anew.
    stream.write_all(b"GET /healthz HT").await.unwrap();
    assert!(
        closed_within(&mut stream, header_timeout * 10).await,
        "a third request stalling in its headers held the connection"
    );
}

#[tokio::test]
async fn a_body_dribbled_slower_than_the_request_timeout_gets_408() {
    let request_timeout = Duration::from_millis(500);
    let app = spawn_app_limited(HttpLimits {
        request_timeout,
        ..HttpLimits::default()
    })
    .await;

    let mut stream = connect(&app).await;
    stream
        .write_all(
            b"POST /api/users/signin HTTP/1.1\r\nHost: test\r\n\
              Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
        )
        .await
        .unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // A byte every 50 ms: never idle for long, never done.
    let dribble = tokio::spawn(async move {
        while writer.write_all(b" ").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });

    let mut received = Vec::new();
    let read = tokio::time::timeout(request_timeout * 10, async {
        let mut chunk = [0_u8; 4096];
        while find(&received, b"}]}").is_none() {
            let n = reader.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            received.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    dribble.abort();

    assert!(read.is_ok(), "the request was not cut off: {received:?}");
    let response = String::from_utf8_lossy(&received);
    assert!(
        response.starts_with("HTTP/1.1 408"),
        "not a 408: {response}"
    );
    assert!(
        response.ends_with(r#"{"errors":[{"message":"The request took too long"}]}"#),
        "not the contract's shape: {response}"
    );
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let app = spawn_app_limited(HttpLimits {
        max_connections: 2,
        header_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(60),
        ..HttpLimits::default()
    })
    .await;

    let first = connect(&app).await;
    let _second = connect(&app).await;
    let mut third = connect(&app).await;
    third.write_all(HEALTHZ).await.unwrap();

    let mut byte = [0_u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_secs(1), third.read(&mut byte))
            .await
            .is_err(),
        "a connection beyond the cap was served"
    );

    drop(first);
    let served = tokio::time::timeout(Duration::from_secs(10), read_response(&mut third)).await;
    assert!(
        matches!(served, Ok((200, _))),
        "not served once a slot freed: {served:?}"
    );
}
