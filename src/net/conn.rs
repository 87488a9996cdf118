//! Kept-alive connections watched for the server's close, so that a request
//! the server provably never received can be sent again.
//!
//! An HTTP/1.1 client that keeps connections alive races the server's close:
//! a server may close a kept-alive connection at any moment (an idle
//! timeout, a request limit, or — llama.cpp's `llama-server` — after every
//! streamed response, without saying so), and a request written into a
//! connection the server is closing fails with "connection closed before
//! message completed". Against llama.cpp a third of a run's requests failed
//! that way. RFC 9112 §9.3.1 lets a client send such a request again only
//! when it can tell the server never acted on it; hyper's pool retries only a
//! request it had not begun to write. This wrapper supplies the proof at the
//! socket, where hyper cannot see it:
//!
//! - before the first byte of a request on a reused connection, a look at
//!   the socket (a non-blocking `MSG_PEEK`): the server's close already
//!   waiting there, or a reset, means it closed before the request was sent;
//! - when the answer to a written request is a close or a reset with not one
//!   byte of response, the kernel tells whether the server's side reset the
//!   connection: Linux resets a connection whose socket was closed with
//!   received data unread, or that receives data after it was closed — in
//!   both cases the server's program never read the whole request. A close
//!   without a reset (within [`RESET_WAIT`]) proves nothing: the server may
//!   have read the request and then died, so the request is an error.
//!
//! Either proof becomes an [`io::Error`] carrying [`Unreceived`], which
//! [`unreceived`] finds in a request's error chain. The wrapper also keeps
//! what the server said of the connection (`Keep-Alive: timeout=N`): a
//! connection idle past it is not written into.
//!
//! Written by hand: no crate watches a hyper connection's socket this way;
//! the wrapper only observes, every byte goes through unchanged. HTTP/2
//! connections (ALPN) are passed through unwatched: their streams do not
//! share this race.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How long a close with no response waits for the reset that proves the
/// request unread. On one host the reset follows in microseconds; across a
/// network, one round trip.
pub const RESET_WAIT: Duration = Duration::from_millis(200);

/// The marker a proven-unreceived request's error carries: how it is
/// known, and how long the connection had been idle before the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreceived {
    pub how: How,
    pub idle: Duration,
}

/// How a request is known never to have reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// The server had closed the connection before the request was written.
    ClosedBeforeSent,
    /// The server reset the connection without reading the request.
    Reset,
    /// The connection sat idle past the keep-alive time the server gave.
    IdlePastKeepAlive,
}

impl Unreceived {
    /// The server closed a connection it had just answered on (within a
    /// second), unannounced: it closes its kept-alive connections after
    /// responses, and reusing them only races it.
    pub fn closes_after_responses(&self) -> bool {
        self.how != How::IdlePastKeepAlive && self.idle < Duration::from_secs(1)
    }
}

impl std::fmt::Display for Unreceived {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.how {
            How::ClosedBeforeSent => {
                "the server had closed the kept-alive connection before the request was sent"
            }
            How::Reset => "the server reset the kept-alive connection without reading the request",
            How::IdlePastKeepAlive => {
                "the kept-alive connection was idle past the time the server keeps it"
            }
        };
        write!(f, "{what} (idle {:.3} s)", self.idle.as_secs_f64())
    }
}

impl std::error::Error for Unreceived {}

/// Whether `e` (a request's error, with its sources) says the server never
/// received the request, and how it is known.
pub fn unreceived(e: &(dyn std::error::Error + 'static)) -> Option<Unreceived> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<io::Error>()
            && let Some(u) = io.get_ref().and_then(|i| i.downcast_ref::<Unreceived>())
        {
            return Some(*u);
        }
        if let Some(u) = err.downcast_ref::<Unreceived>() {
            return Some(*u);
        }
        next = err.source();
    }
    None
}

/// What a client has seen of its servers' ways with connections, shared by
/// every connection it makes.
#[derive(Debug, Default)]
pub struct Habits {
    /// A server closed a connection within a second of answering on it,
    /// without a `Connection: close`: reusing its connections races its close.
    pub closes_after_responses: std::sync::atomic::AtomicBool,
}

impl Habits {
    pub fn closes_after_responses(&self) -> bool {
        self.closes_after_responses.load(Ordering::Relaxed)
    }
}

/// What a response's extensions carry of its connection
/// (`resp.extensions().get::<ConnInfo>()`).
#[derive(Clone, Debug)]
pub struct ConnInfo(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    /// Requests begun on this connection (1: this is its first).
    requests: AtomicU64,
    /// The keep-alive time the server gave, ms (0: none).
    keep_alive_ms: AtomicU64,
    /// The last response said `Connection: close`: its close is announced.
    announced: std::sync::atomic::AtomicBool,
}

impl ConnInfo {
    /// Takes the response's `Connection` header: a close the server
    /// announces is no habit of closing unannounced.
    pub fn announced_close(&self, header: Option<&hyper::header::HeaderValue>) {
        let close = header
            .and_then(|h| h.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")));
        self.0.announced.store(close, Ordering::Relaxed);
    }

    /// Takes the server's `Keep-Alive` header (`timeout=5, max=100`): the
    /// connection is not written into once idle that long.
    pub fn keep_alive(&self, header: Option<&hyper::header::HeaderValue>) {
        let secs = header
            .and_then(|h| h.to_str().ok())
            .and_then(keep_alive_timeout);
        if let Some(s) = secs {
            self.0
                .keep_alive_ms
                .store((s * 1000.0) as u64, Ordering::Relaxed);
        }
    }
}

/// The `timeout` of a `Keep-Alive` header, seconds.
pub fn keep_alive_timeout(header: &str) -> Option<f64> {
    header.split(',').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k.trim().eq_ignore_ascii_case("timeout"))
            .then(|| v.trim().parse::<f64>().ok())
            .flatten()
            .filter(|s| s.is_finite() && *s >= 0.0)
    })
}

/// Where a connection is in its exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// No request in flight.
    Idle,
    /// A request is being written or waits for its first response byte.
    Sent,
    /// Response bytes have arrived.
    Answered,
}

/// A connection whose socket is watched (see the module doc).
pub struct Watched {
    io: MaybeHttpsStream<TokioIo<TcpStream>>,
    watch: bool,
    phase: Phase,
    shared: Arc<Shared>,
    /// When the last response byte arrived.
    last_read: Instant,
    /// How long the connection was idle before the request in flight.
    idle_before: Duration,
    habits: Arc<Habits>,
    /// Waiting for the reset after a close with no response.
    reset_wait: Option<(Instant, Pin<Box<tokio::time::Sleep>>)>,
}

impl Watched {
    fn tcp(&self) -> &TcpStream {
        match &self.io {
            MaybeHttpsStream::Http(t) => t.inner(),
            MaybeHttpsStream::Https(t) => t.inner().get_ref().0.inner().inner(),
        }
    }

    fn fd(&self) -> RawFd {
        self.tcp().as_raw_fd()
    }

    /// Before a new request on a reused connection: why it must not be
    /// written into, if it must not.
    fn closed_before_send(&self) -> Option<How> {
        let keep_ms = self.shared.keep_alive_ms.load(Ordering::Relaxed);
        // A second's margin under the server's word: its clock started when
        // it sent the last byte, ours when it arrived.
        if keep_ms > 0
            && self.last_read.elapsed() + Duration::from_secs(1) >= Duration::from_millis(keep_ms)
        {
            return Some(How::IdlePastKeepAlive);
        }
        match peek(self.fd()) {
            Peeked::Closed | Peeked::Reset => Some(How::ClosedBeforeSent),
            Peeked::Data | Peeked::Nothing => None,
        }
    }

    /// After a close with no response: whether the reset has come.
    fn reset_seen(&self) -> bool {
        matches!(self.tcp().take_error(), Ok(Some(_))) || matches!(peek(self.fd()), Peeked::Reset)
    }
}

impl Watched {
    /// The error of a request proven unreceived.
    fn unreceived(&self, how: How) -> io::Error {
        io::Error::new(
            io::ErrorKind::ConnectionAborted,
            Unreceived {
                how,
                idle: self.idle_before,
            },
        )
    }
}

enum Peeked {
    Closed,
    Reset,
    Data,
    Nothing,
}

/// What waits on the socket, without taking it and without blocking.
fn peek(fd: RawFd) -> Peeked {
    let mut byte = 0u8;
    // SAFETY: `fd` is an open socket owned by the connection for the length
    // of this call; one byte of our own memory is written at most.
    let n = unsafe {
        libc::recv(
            fd,
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => Peeked::Closed,
        n if n > 0 => Peeked::Data,
        _ => match io::Error::last_os_error().raw_os_error() {
            Some(libc::ECONNRESET | libc::EPIPE) => Peeked::Reset,
            _ => Peeked::Nothing,
        },
    }
}

fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    )
}

impl Read for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.watch {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        if this.reset_wait.is_some() {
            return this.poll_reset(cx);
        }
        // Read into the cursor's memory through a buffer of our own, to see
        // how many bytes came (as hyper-util's TokioIo does).
        // SAFETY: the bytes are only written, never de-initialised, and the
        // cursor is advanced by exactly what was filled.
        let n = unsafe {
            let mut inner = hyper::rt::ReadBuf::uninit(buf.as_mut());
            match Pin::new(&mut this.io).poll_read(cx, inner.unfilled()) {
                Poll::Ready(Ok(())) => inner.filled().len(),
                Poll::Ready(Err(e)) if is_reset(&e) && this.awaiting_reused() => {
                    return Poll::Ready(Err(this.unreceived(How::Reset)));
                }
                other => return other,
            }
        };
        unsafe { buf.advance(n) };
        if n > 0 {
            this.phase = Phase::Answered;
            this.last_read = Instant::now();
            return Poll::Ready(Ok(()));
        }
        if this.phase == Phase::Answered
            && this.last_read.elapsed() < Duration::from_secs(1)
            && !this.shared.announced.load(Ordering::Relaxed)
        {
            // Closed by the server right after it answered, unannounced.
            this.habits
                .closes_after_responses
                .store(true, Ordering::Relaxed);
        }
        if !this.awaiting_reused() {
            return Poll::Ready(Ok(()));
        }
        // Closed with not one byte of response: a reset proves the request
        // unread; wait a little for it.
        this.reset_wait = Some((
            Instant::now() + RESET_WAIT,
            Box::pin(tokio::time::sleep(Duration::ZERO)),
        ));
        this.poll_reset(cx)
    }
}

impl Watched {
    /// A request on a reused connection waits for its first response byte.
    fn awaiting_reused(&self) -> bool {
        self.phase == Phase::Sent && self.shared.requests.load(Ordering::Relaxed) > 1
    }

    /// After a close with no response: the reset (an error that proves the
    /// request unread), or the close itself once [`RESET_WAIT`] has passed.
    fn poll_reset(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.reset_seen() {
                self.reset_wait = None;
                return Poll::Ready(Err(self.unreceived(How::Reset)));
            }
            let Some((deadline, sleep)) = self.reset_wait.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            if Instant::now() >= *deadline {
                self.reset_wait = None;
                // The close stands: nothing proves the request unread.
                return Poll::Ready(Ok(()));
            }
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            sleep
                .as_mut()
                .reset(tokio::time::Instant::now() + Duration::from_millis(2));
        }
    }
}

impl Watched {
    /// Before a write: the first bytes of a new request are counted, and on
    /// a reused connection refused when the server has closed it.
    fn begin_request(&mut self) -> io::Result<()> {
        if !self.watch || self.phase == Phase::Sent {
            return Ok(());
        }
        let n = self.shared.requests.fetch_add(1, Ordering::Relaxed) + 1;
        self.idle_before = self.last_read.elapsed();
        if n > 1
            && let Some(how) = self.closed_before_send()
        {
            return Err(self.unreceived(how));
        }
        self.phase = Phase::Sent;
        Ok(())
    }

    /// A reset while a request on a reused connection is written, before any
    /// response byte: the server had reset the connection, unread.
    fn reset_on_write(&self, written: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(Err(e)) if is_reset(&e) && self.awaiting_reused() => {
                Poll::Ready(Err(self.unreceived(How::Reset)))
            }
            other => other,
        }
    }
}

impl Write for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if !buf.is_empty()
            && let Err(e) = this.begin_request()
        {
            return Poll::Ready(Err(e));
        }
        let written = Pin::new(&mut this.io).poll_write(cx, buf);
        this.reset_on_write(written)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if bufs.iter().any(|b| !b.is_empty())
            && let Err(e) = this.begin_request()
        {
            return Poll::Ready(Err(e));
        }
        let written = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.reset_on_write(written)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl Connection for Watched {
    fn connected(&self) -> Connected {
        self.io.connected().extra(ConnInfo(self.shared.clone()))
    }
}

/// The TLS-or-plain connector with every connection watched, and what its
/// connections saw of the server's habits.
#[derive(Clone)]
pub struct WatchingConnector {
    pub inner: HttpsConnector<HttpConnector>,
    pub habits: Arc<Habits>,
}

impl tower::Service<Uri> for WatchingConnector {
    type Response = Watched;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Watched, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let habits = self.habits.clone();
        Box::pin(async move {
            let io = connecting.await?;
            let watch = !io.connected().is_negotiated_h2();
            Ok(Watched {
                io,
                watch,
                phase: Phase::Idle,
                shared: Arc::new(Shared::default()),
                last_read: Instant::now(),
                idle_before: Duration::ZERO,
                habits,
                reset_wait: None,
            })
        })
    }
}
