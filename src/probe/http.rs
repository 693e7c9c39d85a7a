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
    /// Connected and asked, but no well-formed answer (garbage, closed,
    /// silent past the deadline, or more than 4 KiB of headers).
    NoAnswer,
    /// Could not connect by the deadline.
    Unreachable,
}

impl HttpOutcome {
    pub fn is_http(&self) -> bool {
        matches!(self, HttpOutcome::Answered { .. })
    }

    /// The value of the `result` label of `portwarden_probes_total`.
    pub fn result(&self) -> &'static str {
        match self {
            HttpOutcome::Answered { .. } => "http",
            HttpOutcome::Banner => "banner",
            HttpOutcome::NoAnswer => "no_answer",
            HttpOutcome::Unreachable => "unreachable",
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

/// Checks `addr` for HTTP, all within `timeout`; waits up to `banner_wait`
/// for the server to speak first.
pub async fn probe(
    addr: SocketAddr,
    via: &Via,
    timeout: Duration,
    banner_wait: Duration,
) -> HttpOutcome {
    let deadline = tokio::time::Instant::now() + timeout;
    let Ok(Ok(mut stream)) = tokio::time::timeout_at(deadline, super::connect(addr, via)).await
    else {
        return HttpOutcome::Unreachable;
    };
    let mut buf = vec![0u8; MAX_RESPONSE];
    let banner_deadline = (tokio::time::Instant::now() + banner_wait).min(deadline);
    match tokio::time::timeout_at(banner_deadline, stream.read(&mut buf)).await {
        // Silence: a client-speaks-first protocol. Ask.
        Err(_elapsed) => {}
        // Bytes, or a close before we said anything: not HTTP.
        Ok(Ok(n)) if n > 0 => return HttpOutcome::Banner,
        Ok(_) => return HttpOutcome::NoAnswer,
    }
    if !matches!(
        tokio::time::timeout_at(deadline, stream.write_all(REQUEST)).await,
        Ok(Ok(()))
    ) {
        return HttpOutcome::NoAnswer;
    }
    let mut len = 0;
    while len < buf.len() {
        let read = tokio::time::timeout_at(deadline, stream.read(&mut buf[len..])).await;
        match read {
            Ok(Ok(n)) if n > 0 => len += n,
            _ => break,
        }
        match parse_response(&buf[..len]) {
            Parsed::Complete { status } => return HttpOutcome::Answered { status },
            Parsed::Invalid => return HttpOutcome::NoAnswer,
            Parsed::Partial => {}
        }
    }
    HttpOutcome::NoAnswer
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
