//! Reading what a server sends: lines (a `query_response`), a response
//! head, a body as its head frames it — each bounded ([`MAX_HEAD`],
//! [`MAX_BODY`]); the caller bounds the time.

use std::io;
use std::time::Instant;

use super::{Conn, MAX_BODY, MAX_HEAD};

/// A response's status line and headers.
#[derive(Debug)]
pub(super) struct Head {
    pub(super) status: u16,
    pub(super) minor: u8,
    pub(super) headers: Vec<(String, Vec<u8>)>,
}

impl Head {
    pub(super) fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    pub(super) fn all(&self, name: &str) -> Vec<&[u8]> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
            .collect()
    }
}

#[derive(Debug)]
pub(super) enum HeadError {
    Closed,
    Invalid,
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HeadError::Closed => "closed before a whole response head",
            HeadError::Invalid => "not an HTTP response (or a head over 64 KiB)",
        })
    }
}

pub(super) enum BodyError {
    Closed,
    Timeout,
}

impl BodyError {
    pub(super) fn as_str(&self) -> &'static str {
        match self {
            BodyError::Closed => "closed before the whole body, or a malformed chunk",
            BodyError::Timeout => "not whole by the deadline",
        }
    }
}

/// Bytes read from a connection, taken a line, a head or a body at a time.
#[derive(Default)]
pub(super) struct Lines {
    buf: Vec<u8>,
    eof: bool,
    pub(super) first_byte: Option<Instant>,
    pub(super) body_read: usize,
}

impl Lines {
    /// Reads more; false at the end of the stream.
    pub(super) async fn fill(&mut self, conn: &mut Conn) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        let mut chunk = [0u8; 8192];
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            self.eof = true;
            return Ok(false);
        }
        self.first_byte.get_or_insert_with(Instant::now);
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(true)
    }

    /// The next line without its end (`\n` or `\r\n`); the last, unended
    /// line at EOF; None when nothing is left. A line over [`MAX_HEAD`] is
    /// an error.
    pub(super) async fn next(&mut self, conn: &mut Conn) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=i).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(Some(line));
            }
            if self.buf.len() > MAX_HEAD {
                return Err(io::Error::other("a line over 64 KiB"));
            }
            if !self.fill(conn).await? {
                return Ok((!self.buf.is_empty()).then(|| std::mem::take(&mut self.buf)));
            }
        }
    }

    pub(super) async fn head(&mut self, conn: &mut Conn) -> Result<Head, HeadError> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 128];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&self.buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let head = Head {
                        status: response.code.ok_or(HeadError::Invalid)?,
                        minor: response.version.unwrap_or(1),
                        headers: response
                            .headers
                            .iter()
                            .map(|h| (h.name.to_string(), h.value.to_vec()))
                            .collect(),
                    };
                    // Interim responses (100 Continue) are skipped.
                    self.buf.drain(..n);
                    if (100..200).contains(&head.status) && head.status != 101 {
                        continue;
                    }
                    return Ok(head);
                }
                Ok(httparse::Status::Partial) if self.buf.len() <= MAX_HEAD => {}
                _ => return Err(HeadError::Invalid),
            }
            match self.fill(conn).await {
                Ok(true) => {}
                _ => return Err(HeadError::Closed),
            }
        }
    }

    /// The body as framed by `head` (chunked, `Content-Length`, or to the
    /// end), its first [`MAX_BODY`] bytes; reading stops there.
    pub(super) async fn body(
        &mut self,
        conn: &mut Conn,
        head: &Head,
    ) -> Result<Vec<u8>, BodyError> {
        let chunked = head.header("transfer-encoding").is_some_and(|v| {
            String::from_utf8_lossy(v)
                .to_ascii_lowercase()
                .contains("chunked")
        });
        let length: Option<usize> = head
            .header("content-length")
            .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse().ok());
        let mut body = Vec::new();
        if chunked {
            loop {
                let size_line = self.next(conn).await.map_err(|_| BodyError::Closed)?;
                let size_line = size_line.ok_or(BodyError::Closed)?;
                let text = String::from_utf8_lossy(&size_line);
                let size = usize::from_str_radix(text.split(';').next().unwrap_or("").trim(), 16)
                    .map_err(|_| BodyError::Closed)?;
                if size == 0 {
                    return Ok(body);
                }
                self.take(conn, size, &mut body).await?;
                // The chunk's own line end.
                self.next(conn).await.map_err(|_| BodyError::Closed)?;
                if body.len() >= MAX_BODY {
                    body.truncate(MAX_BODY);
                    return Ok(body);
                }
            }
        }
        match length {
            Some(n) => {
                self.take(conn, n.min(MAX_BODY), &mut body).await?;
                Ok(body)
            }
            None => loop {
                let take = self.buf.len().min(MAX_BODY - body.len());
                body.extend(self.buf.drain(..take));
                self.body_read = body.len();
                if body.len() >= MAX_BODY {
                    return Ok(body);
                }
                match self.fill(conn).await {
                    Ok(true) => {}
                    Ok(false) => return Ok(body),
                    Err(_) => return Err(BodyError::Closed),
                }
            },
        }
    }

    /// Exactly `n` more bytes into `out` (kept up to [`MAX_BODY`]).
    pub(super) async fn take(
        &mut self,
        conn: &mut Conn,
        n: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), BodyError> {
        let mut left = n;
        loop {
            let take = self.buf.len().min(left);
            let keep = take.min(MAX_BODY.saturating_sub(out.len()));
            out.extend_from_slice(&self.buf[..keep]);
            self.buf.drain(..take);
            left -= take;
            self.body_read = out.len();
            if left == 0 {
                return Ok(());
            }
            match self.fill(conn).await {
                Ok(true) => {}
                _ => return Err(BodyError::Closed),
            }
        }
    }
}
