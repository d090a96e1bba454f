//! The header-read timeout counted from a request's first byte.
//!
//! Hyper has one timer per connection, running from the moment it waits for
//! a request to the end of that request's headers: it serves as the idle
//! keep-alive timeout, which behind a load balancer must be long (above the
//! balancer's own). A client that starts a request must still finish its
//! headers promptly (slowloris), so this wrapper of the socket fails its
//! reads once the headers of a started request take longer than their
//! timeout. Hand-written because neither hyper nor hyper-util offers it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// Where the connection's requests are: set while one is being served (from
/// the end of its headers to its response), when reads carry its body, not
/// headers; and how many have had their headers read.
#[derive(Clone, Default)]
pub(crate) struct InRequest(Arc<Progress>);

#[derive(Default)]
struct Progress {
    serving: AtomicBool,
    heads: AtomicU64,
}

impl InRequest {
    /// A request's headers are complete; it is being served.
    pub(crate) fn started(&self) {
        let _ = self.0.heads.fetch_add(1, Ordering::AcqRel);
        self.0.serving.store(true, Ordering::Release);
    }

    /// The request has been answered.
    pub(crate) fn answered(&self) {
        self.0.serving.store(false, Ordering::Release);
    }

    fn serving(&self) -> bool {
        self.0.serving.load(Ordering::Acquire)
    }

    fn heads(&self) -> u64 {
        self.0.heads.load(Ordering::Acquire)
    }
}

/// A socket whose reads fail once a request's headers, counted from their
/// first byte, take longer than `timeout`.
pub(crate) struct HeaderDeadline {
    stream: TcpStream,
    in_request: InRequest,
    timeout: Duration,
    /// The running deadline, and the heads read when it started: once
    /// another has been read, it belonged to a request whose headers came.
    deadline: Option<(Pin<Box<Sleep>>, u64)>,
}

impl HeaderDeadline {
    pub(crate) fn new(stream: TcpStream, in_request: InRequest, timeout: Duration) -> Self {
        Self {
            stream,
            in_request,
            timeout,
            deadline: None,
        }
    }
}

impl AsyncRead for HeaderDeadline {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let heads = this.in_request.heads();
        let stale = matches!(&this.deadline, Some((_, started)) if *started != heads);
        if stale || this.in_request.serving() {
            this.deadline = None;
        } else if let Some((deadline, _)) = &mut this.deadline {
            // Polled on every read, so the timer wakes the connection.
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request headers not complete within the header timeout",
                )));
            }
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        let started = matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before;
        if started && this.deadline.is_none() && !this.in_request.serving() {
            this.deadline = Some((Box::pin(tokio::time::sleep(this.timeout)), heads));
        }
        polled
    }
}

impl AsyncWrite for HeaderDeadline {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
