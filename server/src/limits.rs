//! Bounds on what a client controls: how many connections it may hold open, how
//! long a TLS handshake or a request head may take, how long a keep-alive
//! connection may sit idle, and how long a request or response body may stall.
//! The accept loop (`serve.rs`) applies them to every connection.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::metrics::Traffic;

/// Limits for client connections; see `coffer-server serve --help` and docs/security.md.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections (including ones still in their TLS handshake); a
    /// connection beyond this is closed as soon as it is accepted.
    pub max_connections: usize,
    /// Time for a TLS handshake to complete.
    pub handshake_timeout: Duration,
    /// Time from a connection's first byte (or its last response) to a complete
    /// request head.
    pub header_timeout: Duration,
    /// Time a connection with no request in progress may stay open silently.
    pub idle_timeout: Duration,
    /// Time a request body may go without delivering a byte, or a response
    /// without the client taking one, before the request is aborted.
    pub stall_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(60),
            stall_timeout: Duration::from_secs(60),
        }
    }
}

impl ConnectionLimits {
    /// How often a connection's supervisor looks at its clock: often enough that
    /// a limit overshoots by a fraction of itself.
    pub fn check_interval(&self) -> Duration {
        let shortest = self
            .header_timeout
            .min(self.idle_timeout)
            .min(self.stall_timeout);
        (shortest / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
    }
}

/// What a connection has been doing, shared by its IO wrapper, its requests and
/// its supervisor. Times are milliseconds since the connection was accepted;
/// 0 in `head_since`/`write_blocked_since` means "not now".
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    requests: AtomicUsize,
    last_active: AtomicU64,
    head_since: AtomicU64,
    write_blocked_since: AtomicU64,
}

/// Why a supervisor closed a connection (logged at debug level).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    RequestHead,
    Idle,
    ResponseNotRead,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            requests: AtomicUsize::new(0),
            last_active: AtomicU64::new(1),
            // A new connection owes us a request head: one that sends nothing
            // is a slowloris too.
            head_since: AtomicU64::new(1),
            write_blocked_since: AtomicU64::new(0),
        })
    }

    /// Milliseconds since accept, never 0 (0 is "unset").
    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64 + 1
    }

    fn bytes_read(&self) {
        let now = self.now();
        self.last_active.store(now, Ordering::Relaxed);
        if self.requests.load(Ordering::Relaxed) == 0 {
            let _ = self
                .head_since
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    fn bytes_written(&self) {
        self.last_active.store(self.now(), Ordering::Relaxed);
        self.write_blocked_since.store(0, Ordering::Relaxed);
    }

    fn write_blocked(&self) {
        let now = self.now();
        let _ =
            self.write_blocked_since
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// A request head arrived; the returned guard ends the request when the
    /// response body is done (or dropped).
    pub fn request_started(self: &Arc<Self>) -> RequestGuard {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.head_since.store(0, Ordering::Relaxed);
        self.last_active.store(self.now(), Ordering::Relaxed);
        RequestGuard(self.clone())
    }

    /// Whether a limit has run out; the supervisor then drops the connection.
    pub fn expired(&self, limits: &ConnectionLimits) -> Option<Expired> {
        let now = self.now();
        let older_than = |since: u64, limit: Duration| {
            since != 0 && now.saturating_sub(since) > limit.as_millis() as u64
        };
        if older_than(
            self.write_blocked_since.load(Ordering::Relaxed),
            limits.stall_timeout,
        ) {
            return Some(Expired::ResponseNotRead);
        }
        // A request in progress is bounded by its body's stall timeout, not here:
        // the handler may work a long time (a large copy) without any IO.
        if self.requests.load(Ordering::Relaxed) > 0 {
            return None;
        }
        if older_than(
            self.head_since.load(Ordering::Relaxed),
            limits.header_timeout,
        ) {
            return Some(Expired::RequestHead);
        }
        if older_than(
            self.last_active.load(Ordering::Relaxed),
            limits.idle_timeout,
        ) {
            return Some(Expired::Idle);
        }
        None
    }
}

/// Held while a request is in progress on a connection.
#[derive(Debug)]
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.last_active.store(self.0.now(), Ordering::Relaxed);
        self.0.requests.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection's byte stream, reporting reads and writes to its [`Activity`].
pub struct Watched<IO> {
    inner: IO,
    activity: Arc<Activity>,
    traffic: Traffic,
}

impl<IO> Watched<IO> {
    pub fn new(inner: IO, activity: Arc<Activity>, traffic: Traffic) -> Self {
        Self {
            inner,
            activity,
            traffic,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let result = ready!(Pin::new(&mut this.inner).poll_read(cx, buf));
        let read = buf.filled().len().saturating_sub(before);
        if read > 0 {
            this.activity.bytes_read();
            this.traffic.received.inc_by(read as u64);
        }
        Poll::Ready(result)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.note_write(&result);
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.note_write(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<IO> Watched<IO> {
    fn note_write(&self, result: &Poll<io::Result<usize>>) {
        match result {
            Poll::Ready(Ok(n)) if *n > 0 => {
                self.activity.bytes_written();
                self.traffic.sent.inc_by(*n as u64);
            }
            Poll::Pending => self.activity.write_blocked(),
            _ => {}
        }
    }
}

/// A request body that fails once it has delivered nothing for `timeout` while
/// being read: the handler then aborts the upload as on any body error (its temp
/// data is removed, nothing is committed).
pub struct StallTimeout<B> {
    inner: B,
    timeout: Duration,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> StallTimeout<B> {
    pub fn new(inner: B, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            deadline: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the request body delivered nothing for {0:?}; the request is aborted")]
pub struct BodyStalled(Duration);

impl<B> Body for StallTimeout<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.deadline = None;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let deadline = this
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.deadline = None;
                        Poll::Ready(Some(Err(Box::new(BodyStalled(timeout)))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that ends its request (for the idle and head clocks) when
/// it has been sent or dropped.
pub struct Guarded<B> {
    inner: B,
    _request: RequestGuard,
}

impl<B> Guarded<B> {
    pub fn new(inner: B, request: RequestGuard) -> Self {
        Self {
            inner,
            _request: request,
        }
    }
}

impl<B: Body + Unpin> Body for Guarded<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_silent_connection_owes_a_head() {
        let limits = ConnectionLimits {
            header_timeout: Duration::ZERO,
            ..ConnectionLimits::default()
        };
        let activity = Activity::new();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(activity.expired(&limits), Some(Expired::RequestHead));
    }

    #[test]
    fn a_request_in_progress_is_not_idle() {
        let limits = ConnectionLimits {
            header_timeout: Duration::ZERO,
            idle_timeout: Duration::ZERO,
            ..ConnectionLimits::default()
        };
        let activity = Activity::new();
        let guard = activity.request_started();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(activity.expired(&limits), None);
        drop(guard);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(activity.expired(&limits), Some(Expired::Idle));
    }
}
