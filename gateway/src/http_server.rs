//! The HTTP/1 server at the edge: a cap on concurrent connections, an idle
//! keep-alive timeout, a header-read timeout and a whole-request timeout,
//! none of which `axum::serve` exposes.
//!
//! The accept loop is hyper's own connection builder driven by hand, as in
//! axum's "serve with hyper" example: hyper provides the idle timer (its
//! header-read timer, which runs from when a connection waits for a request),
//! `tower::timeout` the request timer and `hyper_util` the graceful
//! shutdown; the connection cap (a semaphore taken before `accept`) and the
//! header timer counted from a request's first byte (`header_deadline`) are
//! ours.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use axum::{BoxError, Router};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::timeout::error::Elapsed;
use tower::timeout::TimeoutLayer;
use tower::{ServiceBuilder, ServiceExt};

use crate::error::{error_response, ErrorEntry};
use crate::header_deadline::{HeaderDeadline, InRequest};

/// Bounds on what one client can hold at the edge.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// From a request's first byte to the end of its headers; past it the
    /// connection is closed.
    pub header_timeout: Duration,
    /// From the moment a connection waits for a request (accepted, or its
    /// previous response sent) to the end of that request's headers; past
    /// it the connection is closed. So it bounds how long an idle keep-alive
    /// connection is kept, and also a request's headers that start late.
    pub idle_timeout: Duration,
    /// From the end of a request's headers to its response, the body's
    /// upload included; past it the answer is 408.
    pub request_timeout: Duration,
    /// Connections served at once; further ones wait, unaccepted, in the
    /// listen backlog until one closes.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            max_connections: 4096,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then stops
/// accepting and waits for the connections to finish their requests.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = router.layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(request_failed))
            .layer(TimeoutLayer::new(limits.request_timeout)),
    );
    let mut http = http1::Builder::new();
    let _ = http
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout);
    // Waiting before `accept` (rather than accepting and closing) costs
    // nothing per waiting client, and each is served as soon as a slot frees;
    // a client that gives up meanwhile is dropped by the kernel.
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.map_err(std::io::Error::other)?,
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // As `axum::serve` does: responses are small, do not delay them.
        let _ = stream.set_nodelay(true);
        let in_request = InRequest::default();
        let (started, answered) = (in_request.clone(), in_request.clone());
        let service = router
            .clone()
            .map_request(move |mut request: Request<Incoming>| {
                started.started();
                let _ = request.extensions_mut().insert(ConnectInfo(peer));
                request
            })
            .map_response(move |response| {
                answered.answered();
                response
            });
        let stream = HeaderDeadline::new(stream, in_request, limits.header_timeout);
        let connection = graceful
            .watch(http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service)));
        let _connection = tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The request timeout's answer, in the contract's shape.
async fn request_failed(error: BoxError) -> Response {
    if error.is::<Elapsed>() {
        // The request's own metrics and trace span were dropped with it.
        metrics::counter!("http_requests_timed_out_total").increment(1);
        return error_response(
            StatusCode::REQUEST_TIMEOUT,
            vec![ErrorEntry {
                message: "The request took too long".to_owned(),
                field: None,
            }],
        );
    }
    tracing::error!(%error, "request failed below the routes");
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        vec![ErrorEntry {
            message: "Something went wrong".to_owned(),
            field: None,
        }],
    )
}

/// Per-connection errors (the client reset before we accepted) are routine;
/// anything else, such as running out of file descriptors, is retried after
/// a pause rather than spinning or stopping the server.
async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "accepting a connection failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
