//! How an ops server accepts and holds connections, so that it never starves its process (a
//! worker's API streams and transcript files need file descriptors too): at most
//! `ops.max_connections` at once (the rest wait in the kernel's backlog, which costs this
//! process nothing), a request's head must arrive within [`HEADER_TIMEOUT`] (a slowloris
//! client is cut off), and a connection that moves no byte for [`IDLE_TIMEOUT`] is closed.
//! This module must not route or authenticate.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A request's head (the request line and headers) must arrive within this.
pub(super) const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection that neither reads nor writes a byte for this long is closed.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests in progress at shutdown get this long to finish.
const DRAIN: Duration = Duration::from_secs(5);

/// Serves `router` on `listener` until `shutdown`, holding at most `max` connections.
pub(super) async fn serve(
    listener: TcpListener,
    router: Router,
    max: usize,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(max));
    let tasks = TaskTracker::new();
    loop {
        let slot = tokio::select! {
            () = shutdown.cancelled() => break,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of descriptors, or a connection reset before it was taken: wait a
                    // little rather than spin.
                    tracing::warn!(message = "Ops server: accepting a connection failed.", %error);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (router, shutdown) = (router.clone(), shutdown.clone());
        tasks.spawn(async move {
            connection(stream, router, shutdown).await;
            drop(slot);
        });
    }
    tasks.close();
    if tokio::time::timeout(DRAIN, tasks.wait()).await.is_err() {
        tracing::debug!(
            message = "Ops server: requests still in progress at shutdown were dropped."
        );
    }
}

async fn connection(stream: TcpStream, router: Router, shutdown: CancellationToken) {
    let io = TokioIo::new(Idle::new(stream, IDLE_TIMEOUT));
    let service = TowerToHyperService::new(router);
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            // A client that went away, or one cut off by a timeout: nothing to report.
            if let Err(error) = res {
                tracing::debug!(message = "Ops connection ended.", %error);
            }
        }
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            if let Err(error) = conn.await {
                tracing::debug!(message = "Ops connection ended at shutdown.", %error);
            }
        }
    }
}

/// A stream that fails with `TimedOut` once it has moved no byte for its timeout.
struct Idle {
    stream: TcpStream,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl Idle {
    fn new(stream: TcpStream, timeout: Duration) -> Self {
        Self { stream, timeout, deadline: Box::pin(tokio::time::sleep(timeout)) }
    }

    fn moved(&mut self) {
        self.deadline.as_mut().reset(Instant::now() + self.timeout);
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        ready!(self.deadline.as_mut().poll(cx));
        Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, "ops connection idle"))
    }
}

impl AsyncRead for Idle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(res) => {
                if buf.filled().len() > before {
                    self.moved();
                }
                Poll::Ready(res)
            }
            Poll::Pending => self.expired(cx).map(Err),
        }
    }
}

impl AsyncWrite for Idle {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write(cx, data) {
            Poll::Ready(res) => {
                if res.as_ref().is_ok_and(|n| *n > 0) {
                    self.moved();
                }
                Poll::Ready(res)
            }
            Poll::Pending => self.expired(cx).map(Err),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
