//! Accepting connections: TLS or plain HTTP as the web config says, basic
//! auth and extra headers, and the limits that keep a client from holding
//! the exporter: at most [`MAX_CONNECTIONS`] at once (at the cap, the oldest
//! connection that has not sent a request yet makes room, so idle ones can
//! never lock a scrape out), the first byte within [`FIRST_BYTE`], request
//! headers within
//! the request timeout (which also closes idle keep-alive connections) and
//! at most [`MAX_HEAD`] bytes of them, no request bodies, and every response
//! written within the request timeout of its request, however slowly the
//! client reads.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::auth::Denied;
use super::web_config::Web;
use crate::error::Error;

/// Connections served at once. At the cap, the oldest that has not sent a
/// request yet is closed for a new one; with none such, the new one is.
pub const MAX_CONNECTIONS: usize = 512;
/// How long a new connection may stay silent (no TLS hello, no request
/// line) before it is closed, at most: scrapers write at once.
pub const FIRST_BYTE: Duration = Duration::from_secs(5);
/// The most bytes of request line and headers read for one request (hyper's
/// smallest buffer); more is refused with 431.
pub const MAX_HEAD: usize = 8192;
/// Headers per request; more is refused with 431.
pub const MAX_HEADERS: usize = 64;
/// How long requests in flight may take to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(5);

/// What every connection is served with.
#[derive(Clone)]
pub struct Serving {
    pub router: Router,
    pub web: Arc<Web>,
    /// The time a client has to send a request's headers (or, idle on a
    /// kept-alive connection, to start one) and to read the whole response.
    pub request_timeout: Duration,
}

/// Serves until `shutdown` resolves, then lets requests in flight finish
/// (for up to five seconds).
pub async fn serve(
    listener: TcpListener,
    serving: Serving,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let graceful = GracefulShutdown::new();
    let open = Arc::new(Mutex::new(Open::default()));
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of fds or similar: not a reason to stop serving.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some((id, conn)) = lock(&open).admit() else {
            tracing::debug!("{MAX_CONNECTIONS} connections open, all in use: closing a new one");
            continue;
        };
        let serving = serving.clone();
        let watcher = graceful.watcher();
        let open = Arc::clone(&open);
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            tokio::select! {
                () = connection(stream, serving, watcher, Arc::clone(&conn)) => {}
                () = conn.close.notified() => {}
            }
            lock(&open).conns.remove(&id);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN) => tracing::warn!("requests still in flight after {DRAIN:?}: closing them"),
    }
    Ok(())
}

/// The connections open, in the order they came.
#[derive(Default)]
struct Open {
    next: u64,
    conns: std::collections::BTreeMap<u64, Arc<Conn>>,
}

/// One open connection, as the accept loop sees it.
#[derive(Default)]
struct Conn {
    /// No request has come yet.
    idle: std::sync::atomic::AtomicBool,
    /// Told to close, to make room.
    close: tokio::sync::Notify,
}

impl Open {
    /// Makes room for a new connection if there is any to make: at the cap
    /// the oldest idle one is closed. `None`: every one is in use.
    fn admit(&mut self) -> Option<(u64, Arc<Conn>)> {
        use std::sync::atomic::Ordering::Relaxed;
        if self.conns.len() >= MAX_CONNECTIONS {
            let oldest_idle = self
                .conns
                .iter()
                .find(|(_, c)| c.idle.load(Relaxed))
                .map(|(id, _)| *id)?;
            if let Some(c) = self.conns.remove(&oldest_idle) {
                c.close.notify_one();
            }
        }
        let id = self.next;
        self.next += 1;
        let conn = Arc::new(Conn::default());
        conn.idle.store(true, Relaxed);
        self.conns.insert(id, Arc::clone(&conn));
        Some((id, conn))
    }
}

fn lock(open: &Mutex<Open>) -> std::sync::MutexGuard<'_, Open> {
    open.lock().unwrap_or_else(|p| p.into_inner())
}

async fn connection(
    mut stream: TcpStream,
    serving: Serving,
    watcher: hyper_util::server::graceful::Watcher,
    conn: Arc<Conn>,
) {
    let timeout = serving.request_timeout;
    let tls = serving.web.current().tls.clone();
    let clock = Arc::new(Clock::default());
    // Silent since it connected: closed soon, whatever the request timeout.
    let first = match tokio::time::timeout(timeout.min(FIRST_BYTE), first_byte(&stream)).await {
        Ok(Ok(Some(b))) => b,
        _ => return,
    };
    let Some(tls) = tls else {
        let io = Timed::new(stream, Arc::clone(&clock));
        http(io, serving, clock, watcher, conn).await;
        return;
    };
    if first != 0x16 {
        refuse_plain_http(&mut stream, timeout).await;
        return;
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let io = Timed::new(stream, Arc::clone(&clock));
    match tokio::time::timeout(timeout, acceptor.accept(io)).await {
        Ok(Ok(tls_stream)) => http(tls_stream, serving, clock, watcher, conn).await,
        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!("TLS handshake timed out"),
    }
}

async fn first_byte(stream: &TcpStream) -> io::Result<Option<u8>> {
    let mut b = [0u8; 1];
    Ok((stream.peek(&mut b).await? == 1).then_some(b[0]))
}

/// A plain HTTP request on the TLS port gets what Go's server answers, so
/// the user sees why (and both exporters look the same from outside).
async fn refuse_plain_http(stream: &mut TcpStream, timeout: Duration) {
    let mut head = [0u8; 5];
    let mut got = 0;
    let read = async {
        while got < head.len() {
            match stream.read(&mut head[got..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
    };
    if tokio::time::timeout(timeout, read).await.is_err() || got < head.len() {
        return;
    }
    if [b"GET /", b"HEAD ", b"POST ", b"PUT /", b"OPTIO"].contains(&&head) {
        let reply =
            b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";
        let _ = tokio::time::timeout(timeout, stream.write_all(reply)).await;
    }
    let _ = stream.shutdown().await;
}

async fn http<S>(
    io: S,
    serving: Serving,
    clock: Arc<Clock>,
    watcher: hyper_util::server::graceful::Watcher,
    conn: Arc<Conn>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let timeout = serving.request_timeout;
    let service = hyper::service::service_fn(move |request| {
        conn.idle.store(false, std::sync::atomic::Ordering::Relaxed);
        clock.arm(Instant::now() + timeout);
        respond(request, serving.clone())
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .max_buf_size(MAX_HEAD)
        .max_headers(MAX_HEADERS)
        .serve_connection(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

async fn respond(
    request: Request<Incoming>,
    serving: Serving,
) -> Result<Response<Body>, Infallible> {
    let config = serving.web.current();
    let mut response = if has_body(&request) {
        super::response::text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request bodies are not accepted\n",
        )
    } else {
        let authorization = request
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes().to_vec());
        let allowed = match &config.users {
            None => Ok(()),
            Some(users) => users.check(authorization.as_deref()).await,
        };
        match allowed {
            Ok(()) => {
                let mut router = serving.router;
                match (CatchUnwind(Box::pin(router.call(request)))).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(never)) => match never {},
                    Err(panic) => {
                        crate::counters::handler_panicked(&*panic);
                        super::response::text(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "internal error: the request's handler failed (logged and counted)\n",
                        )
                    }
                }
            }
            Err(Denied::Unauthorized) => {
                let mut r = super::response::text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
                r
            }
            Err(Denied::Busy) => super::response::text(
                StatusCode::TOO_MANY_REQUESTS,
                "too many authentication checks waiting\n",
            ),
        }
    };
    for (name, value) in &config.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    Ok(response)
}

/// A future whose panic is caught and handed back: one request's bug is
/// answered 500 instead of dropping the connection unanswered.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = std::thread::Result<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        // The future is dropped after a panic, never polled again: what it
        // left half-done is not seen.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// Whether the request carries a body: nothing we serve takes one.
fn has_body(request: &Request<Incoming>) -> bool {
    let headers = request.headers();
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// The deadline of the request being answered on one connection.
#[derive(Default)]
struct Clock(Mutex<Option<Instant>>);

impl Clock {
    fn arm(&self, deadline: Instant) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(deadline);
    }

    fn deadline(&self) -> Option<Instant> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A stream whose writes fail once they have waited past the deadline of
/// the request they answer: a client that stops reading (or reads a byte
/// now and then) loses its connection rather than holding it.
struct Timed<S> {
    inner: S,
    clock: Arc<Clock>,
    sleep: Pin<Box<Sleep>>,
}

impl<S> Timed<S> {
    fn new(inner: S, clock: Arc<Clock>) -> Timed<S> {
        Timed {
            inner,
            clock,
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
        }
    }

    /// A write's result, unless it must wait past the deadline: then an
    /// error (else a wake-up at the deadline is set).
    fn bounded<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match poll {
            Poll::Pending => match self.expired(cx) {
                Some(e) => Poll::Ready(Err(e)),
                None => Poll::Pending,
            },
            done => done,
        }
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        let deadline = self.clock.deadline()?;
        if Instant::now() < deadline {
            self.sleep.as_mut().reset(deadline);
            if self.sleep.as_mut().poll(cx).is_pending() {
                return None;
            }
        }
        Some(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client did not read the response within the request timeout",
        ))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Timed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Timed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.bounded(cx, poll)
    }

    // Vectored writes pass through: without them hyper copies every
    // response body into its own write buffer, one copy per connection
    // (20 scrapers × a few MB, seen with heaptrack).
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.bounded(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.bounded(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
