//! HTTP liveness over a raw TCP stream, with no side effects worth the name
//! (SPEC defect 4):
//!
//! - A server that speaks first (SSH, SMTP, MySQL, FTP banners) is not HTTP
//!   and is sent nothing: we wait briefly for a banner before writing.
//! - Our request is `GET / HTTP/1.0` with no `Host:` header (Redis logs a
//!   "Possible SECURITY ATTACK" on `Host:` and `POST`), through no proxy,
//!   following no redirect.
//! - At most 4 KiB are read, and the whole check ends by its deadline.
//!
//! Any well-formed status line and header block is an answer, 4xx and 5xx
//! included: the server is up and speaking HTTP.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

use super::Via;

/// The most we read of an answer.
pub const MAX_RESPONSE: usize = 4096;

/// The request we send, whole.
pub const REQUEST: &[u8] = concat!(
    "GET / HTTP/1.0\r\n",
    "User-Agent: portwarden/",
    env!("CARGO_PKG_VERSION"),
    "\r\nAccept: */*\r\nConnection: close\r\n\r\n"
)
.as_bytes();

/// What one HTTP check saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpOutcome {
    /// A status line and headers came back.
    Answered { status: u16 },
    /// The server spoke first: not HTTP. Nothing was sent.
    Banner,
    /// Answered our request with bytes that are not an HTTP response (or
    /// more than 4 KiB of headers).
    NotHttp,
    /// Closed or reset the connection without an answer.
    Closed,
    /// Connected, but no complete answer by the deadline.
    Timeout,
    /// Could not connect by the deadline.
    Unreachable,
    /// Could not even try, for a lack of our own (see
    /// [`super::our_fault`]): no verdict on the port.
    Error(&'static str),
}

/// What an outcome says about whether the port speaks HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It answered HTTP.
    Http,
    /// It said something that HTTP servers do not say (a banner, bytes that
    /// are not a status line, a close or reset after our request).
    NotHttp,
    /// Nothing to go by: it did not answer in time, or could not be
    /// reached. A busy server looks like this.
    Inconclusive,
    /// We could not ask: nothing is learnt, nothing changes.
    Ours,
}

impl HttpOutcome {
    pub fn is_http(&self) -> bool {
        matches!(self, HttpOutcome::Answered { .. })
    }

    pub fn verdict(&self) -> Verdict {
        match self {
            HttpOutcome::Answered { .. } => Verdict::Http,
            HttpOutcome::Banner | HttpOutcome::NotHttp | HttpOutcome::Closed => Verdict::NotHttp,
            HttpOutcome::Timeout | HttpOutcome::Unreachable => Verdict::Inconclusive,
            HttpOutcome::Error(_) => Verdict::Ours,
        }
    }

    /// The value of the `result` label of `portwarden_probes_total`.
    pub fn result(&self) -> &'static str {
        match self {
            HttpOutcome::Answered { .. } => "http",
            HttpOutcome::Banner => "banner",
            HttpOutcome::NotHttp => "not_http",
            HttpOutcome::Closed => "closed",
            HttpOutcome::Timeout => "timeout",
            HttpOutcome::Unreachable => "unreachable",
            HttpOutcome::Error(_) => "error",
        }
    }
}

/// How a response read so far parses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// Status line and headers complete.
    Complete { status: u16 },
    /// Well-formed so far; more bytes needed.
    Partial,
    /// Not an HTTP response.
    Invalid,
}

/// Parses the start of an HTTP response. Pure, for tests and fuzzing.
pub fn parse_response(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(buf) {
        Ok(httparse::Status::Complete(_)) => match response.code {
            Some(status) => Parsed::Complete { status },
            None => Parsed::Invalid,
        },
        Ok(httparse::Status::Partial) => Parsed::Partial,
        // More headers than we care to hold is still a server speaking HTTP
        // only if the status line parsed; treat it as not an answer.
        Err(_) => Parsed::Invalid,
    }
}

/// Checks `addr` for HTTP, giving the server `timeout` in all; waits up to
/// `banner_wait` for the server to speak first (zero: the port is known to
/// wait for its client, ask at once). `requests` caps the HTTP requests in
/// flight (`HTTP_DETECTION_CONCURRENCY`): a permit is taken before asking —
/// after the banner wait, which only listens, so that hundreds of silent
/// seconds do not queue behind each other — and the time spent waiting for
/// it is ours, not the server's.
pub async fn probe(
    addr: SocketAddr,
    via: &Via,
    timeout: Duration,
    banner_wait: Duration,
    requests: Option<&Semaphore>,
) -> HttpOutcome {
    // Known to wait for its client: the permit first, then connect and ask.
    let early = match requests {
        Some(s) if banner_wait.is_zero() => Some(s.acquire().await),
        _ => None,
    };
    // The socket first: entering a namespace is ours to wait for.
    let socket = match super::tcp_socket(addr, via).await {
        Ok(socket) => socket,
        Err(e) => {
            return super::our_fault(&e).map_or(HttpOutcome::Unreachable, HttpOutcome::Error);
        }
    };
    let start = tokio::time::Instant::now();
    let mut deadline = start + timeout;
    let mut stream = match tokio::time::timeout_at(deadline, socket.connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            return super::our_fault(&e).map_or(HttpOutcome::Unreachable, HttpOutcome::Error);
        }
        Err(_elapsed) => return HttpOutcome::Unreachable,
    };
    let mut buf = vec![0u8; MAX_RESPONSE];
    if !banner_wait.is_zero() {
        let banner_deadline = (tokio::time::Instant::now() + banner_wait).min(deadline);
        match tokio::time::timeout_at(banner_deadline, stream.read(&mut buf)).await {
            // Silence: a client-speaks-first protocol. Ask.
            Err(_elapsed) => {}
            // Bytes before we said anything: not HTTP.
            Ok(Ok(n)) if n > 0 => return HttpOutcome::Banner,
            // Closed or reset before we said anything.
            Ok(_) => return HttpOutcome::Closed,
        }
    }
    let _permit = match (early, requests) {
        (Some(permit), _) => Some(permit),
        (None, Some(s)) => {
            let waited = tokio::time::Instant::now();
            let permit = s.acquire().await;
            deadline += waited.elapsed();
            Some(permit)
        }
        (None, None) => None,
    };
    match tokio::time::timeout_at(deadline, stream.write_all(REQUEST)).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => return HttpOutcome::Closed,
        Err(_elapsed) => return HttpOutcome::Timeout,
    }
    let mut len = 0;
    while len < buf.len() {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf[len..])).await {
            Ok(Ok(n)) if n > 0 => len += n,
            // EOF or reset before a whole answer.
            Ok(_) => return HttpOutcome::Closed,
            Err(_elapsed) => return HttpOutcome::Timeout,
        }
        match parse_response(&buf[..len]) {
            Parsed::Complete { status } => return HttpOutcome::Answered { status },
            Parsed::Invalid => return HttpOutcome::NotHttp,
            Parsed::Partial => {}
        }
    }
    // 4 KiB and still no end of headers.
    HttpOutcome::NotHttp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_has_no_host_and_no_post() {
        let text = std::str::from_utf8(REQUEST).expect("ascii");
        assert!(text.starts_with("GET / HTTP/1.0\r\n"));
        assert!(!text.to_ascii_lowercase().contains("host:"));
        assert!(!text.contains("POST"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn parses_responses() {
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nbody"),
            Parsed::Complete { status: 200 }
        );
        assert_eq!(
            parse_response(b"HTTP/1.0 503 Busy\r\n\r\n"),
            Parsed::Complete { status: 503 }
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 404 Not Found\r\nServer: x"),
            Parsed::Partial
        );
        assert_eq!(parse_response(b"HTTP/1."), Parsed::Partial);
        assert_eq!(
            parse_response(b"-ERR unknown command 'GET'\r\n"),
            Parsed::Invalid
        );
        assert_eq!(parse_response(b"SSH-2.0-OpenSSH_9.2\r\n"), Parsed::Invalid);
        assert_eq!(parse_response(b"\x00\x01\x02"), Parsed::Invalid);
    }
}
