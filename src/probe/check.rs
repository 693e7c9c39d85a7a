//! A check of one target by one module — the work behind the targets file,
//! `/probe` and `portwarden check`. The host is resolved at every check (DNS
//! changes); the whole check ends by its deadline whatever the other side
//! does; at most one connection is open at a time; what is read is bounded
//! (64 KiB of headers or of one line, 1 MiB of body); no proxy is used. A
//! failed check is data — a [`Reason`] from one small vocabulary shared by
//! every kind — and a check we could not even try for a lack of our own
//! (descriptors, memory) says so in [`Report::ours`] rather than failing
//! the target.

use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant as Deadline;

use super::Via;
use super::tls::{self, CertDates};
use super::udp::{self, UdpOutcome};
use crate::modules::{HttpModule, IpPreference, Module, Prober, TcpModule, UdpModule};
use crate::targets::{Endpoint, parse_endpoint};

/// Why a check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    Refused,
    Timeout,
    Unreachable,
    Dns,
    Tls,
    HttpStatus,
    NoMatch,
    Closed,
}

impl Reason {
    pub const ALL: [Reason; 8] = [
        Reason::Refused,
        Reason::Timeout,
        Reason::Unreachable,
        Reason::Dns,
        Reason::Tls,
        Reason::HttpStatus,
        Reason::NoMatch,
        Reason::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Refused => "refused",
            Reason::Timeout => "timeout",
            Reason::Unreachable => "unreachable",
            Reason::Dns => "dns",
            Reason::Tls => "tls",
            Reason::HttpStatus => "http_status",
            Reason::NoMatch => "no_match",
            Reason::Closed => "closed",
        }
    }
}

/// What a TLS handshake showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsSeen {
    /// Set when the handshake completed.
    pub version: Option<&'static str>,
    /// The presented certificates' dates, verified or not.
    pub dates: Option<CertDates>,
}

/// What an HTTP check saw of its last response.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HttpSeen {
    /// 0: no response.
    pub status: u16,
    /// 1.0 or 1.1; 0 with no response.
    pub version: f64,
    pub redirects: u32,
    /// The last request went over TLS.
    pub ssl: bool,
    /// `Content-Length` of the last response, -1 when absent.
    pub content_length: i64,
    /// Bytes of body read.
    pub body_bytes: u64,
    /// Seconds per phase, summed over redirects: resolve, connect, tls,
    /// processing, transfer.
    pub phases: [f64; 5],
}

pub const PHASES: [&str; 5] = ["resolve", "connect", "tls", "processing", "transfer"];

impl HttpSeen {
    /// The phases' seconds by name, in name order (as blackbox writes them).
    pub fn phases_by_name(&self) -> Vec<(&'static str, f64)> {
        let mut out: Vec<(&'static str, f64)> = PHASES.iter().copied().zip(self.phases).collect();
        out.sort_by_key(|(name, _)| *name);
        out
    }
}

/// Everything one check saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub success: bool,
    /// Why not, when it failed.
    pub reason: Option<Reason>,
    /// Not tried for a lack of our own: no verdict on the target.
    pub ours: Option<&'static str>,
    pub seconds: f64,
    /// 4 or 6: the family of the address used.
    pub ip_protocol: Option<u8>,
    /// The address used (the last, after redirects).
    pub address: Option<IpAddr>,
    pub resolve_seconds: f64,
    pub tls: Option<TlsSeen>,
    pub http: Option<HttpSeen>,
    /// Set by the probers with expectations (tcp, http): whether one failed.
    pub regex_failed: Option<bool>,
    /// UDP: `open`, `closed`, `open|filtered`, `unreachable`.
    pub udp_class: Option<&'static str>,
    /// What happened, a line each, for `debug=true`.
    pub log: Vec<String>,
}

impl Report {
    /// A check that failed before it began (a target its prober cannot
    /// read): no reason from the vocabulary, nothing seen.
    pub fn failed_before_start() -> Report {
        Report {
            success: false,
            reason: None,
            ours: None,
            seconds: 0.0,
            ip_protocol: None,
            address: None,
            resolve_seconds: 0.0,
            tls: None,
            http: None,
            regex_failed: None,
            udp_class: None,
            log: Vec::new(),
        }
    }
}

/// The most of a response head, or of one line of a `query_response`.
pub const MAX_HEAD: usize = 64 * 1024;
/// The most of a body read (for its regular expressions); the rest is not.
pub const MAX_BODY: usize = 1024 * 1024;
const MAX_REDIRECTS: u32 = 10;

/// Reads `target` as `module`'s prober takes it: an `http` module a URL
/// (`http://` added when there is no scheme), a `tcp` module `host:port`
/// (`tls://` asks for TLS), a `udp` module `host:port`.
pub fn plan(module: &Module, target: &str) -> Result<Endpoint, String> {
    let endpoint = match &module.prober {
        Prober::Http(_) if !target.contains("://") => parse_endpoint(&format!("http://{target}")),
        Prober::Unsupported(p) => {
            return Err(format!(
                "module '{}' uses the {p} prober, which portwarden does not have",
                module.name
            ));
        }
        _ => parse_endpoint(target),
    }?;
    let fits = matches!(
        (&module.prober, &endpoint),
        (Prober::Http(_), Endpoint::Http { .. })
            | (Prober::Tcp(_), Endpoint::Tcp { .. } | Endpoint::Tls { .. })
            | (Prober::Udp(_), Endpoint::Udp { .. } | Endpoint::Tcp { .. })
    );
    if !fits {
        return Err(format!(
            "target '{target}' does not fit module '{}' (prober {}): http modules take URLs, tcp modules host:port or tls://host:port, udp modules host:port or udp://host:port",
            module.name,
            module.prober.name()
        ));
    }
    Ok(match endpoint {
        Endpoint::Tcp { host, port } if matches!(module.prober, Prober::Udp(_)) => {
            Endpoint::Udp { host, port }
        }
        e => e,
    })
}

/// Checks `endpoint` (from [`plan`]) by `module`, ending by `timeout`.
pub async fn run(endpoint: &Endpoint, module: &Module, timeout: Duration) -> Report {
    let started = Instant::now();
    let mut c = Check {
        started,
        deadline: Deadline::now() + timeout,
        report: Report::failed_before_start(),
    };
    c.log(format!(
        "Beginning probe: prober {}, timeout {:.3}s",
        module.prober.name(),
        timeout.as_secs_f64()
    ));
    let result = match (&module.prober, endpoint) {
        (Prober::Tcp(m), Endpoint::Tcp { host, port }) => c.tcp(m, host, *port, false).await,
        (Prober::Tcp(m), Endpoint::Tls { host, port }) => c.tcp(m, host, *port, true).await,
        (Prober::Http(m), Endpoint::Http { .. }) => c.http(m, endpoint).await,
        (Prober::Udp(m), Endpoint::Udp { host, port }) => c.udp(m, host, *port).await,
        _ => Err(Fail::Reason(Reason::Unreachable)),
    };
    match result {
        Ok(()) => c.report.success = true,
        Err(Fail::Reason(r)) => {
            c.log(format!("Probe failed: {}", r.as_str()));
            c.report.reason = Some(r);
        }
        Err(Fail::Ours(why)) => {
            c.log(format!("Probe not tried: {why} (ours, not the target's)"));
            c.report.ours = Some(why);
        }
    }
    c.report.seconds = started.elapsed().as_secs_f64();
    c.log(format!(
        "Probe {} after {:.6}s",
        if c.report.success {
            "succeeded"
        } else {
            "failed"
        },
        c.report.seconds
    ));
    c.report
}

enum Fail {
    Reason(Reason),
    Ours(&'static str),
}

impl From<Reason> for Fail {
    fn from(r: Reason) -> Self {
        Fail::Reason(r)
    }
}

/// An open connection, plain or over TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Conn {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf).await,
            Conn::Tls(s) => s.read(buf).await,
        }
    }

    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.write_all(buf).await,
            Conn::Tls(s) => {
                s.write_all(buf).await?;
                s.flush().await
            }
        }
    }
}

struct Check {
    started: Instant,
    deadline: Deadline,
    report: Report,
}

impl Check {
    fn log(&mut self, line: String) {
        let at = self.started.elapsed().as_secs_f64();
        self.report.log.push(format!("{at:>9.6}s {line}"));
    }

    /// `fut` by the deadline; past it, a timeout.
    async fn within<T>(&self, fut: impl Future<Output = T>) -> Result<T, Fail> {
        tokio::time::timeout_at(self.deadline, fut)
            .await
            .map_err(|_| Fail::Reason(Reason::Timeout))
    }

    /// The addresses to use for `host`, resolved now, in the module's
    /// order: the preferred family's first; the other family's after them
    /// when the module tries every address, or instead of them when there
    /// are none and it may fall back (blackbox_exporter's rule).
    async fn resolve(
        &mut self,
        host: &str,
        port: u16,
        ip: IpPreference,
    ) -> Result<Vec<SocketAddr>, Fail> {
        let t = Instant::now();
        let chosen = if let Ok(literal) = host.parse::<IpAddr>() {
            vec![SocketAddr::new(literal, port)]
        } else {
            let found = self
                .within(tokio::net::lookup_host((host, port)))
                .await
                .inspect_err(|_| self.log(format!("Resolving {host} timed out")))?;
            let addrs: Vec<SocketAddr> = match found {
                Ok(addrs) => addrs.collect(),
                Err(e) => {
                    self.log(format!("Resolving {host} failed: {e}"));
                    return Err(Reason::Dns.into());
                }
            };
            let (preferred, other): (Vec<SocketAddr>, Vec<SocketAddr>) =
                addrs.iter().partition(|a| a.is_ipv6() == ip.v6_first);
            let chosen = match (preferred.is_empty(), ip.every_address, ip.fallback) {
                (false, true, _) => [preferred, other].concat(),
                (false, false, _) => preferred,
                (true, _, true) => other,
                (true, _, false) => Vec::new(),
            };
            if chosen.is_empty() {
                self.log(format!(
                    "Resolving {host}: no {} address{}",
                    if ip.v6_first { "IPv6" } else { "IPv4" },
                    if ip.fallback {
                        "es at all"
                    } else {
                        " (no fallback)"
                    }
                ));
                return Err(Reason::Dns.into());
            }
            chosen
        };
        self.report.resolve_seconds += t.elapsed().as_secs_f64();
        self.used(chosen[0]);
        self.log(format!(
            "Resolved {host} to {}",
            chosen
                .iter()
                .map(|a| a.ip().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        Ok(chosen)
    }

    fn used(&mut self, addr: SocketAddr) {
        self.report.ip_protocol = Some(if addr.is_ipv6() { 6 } else { 4 });
        self.report.address = Some(addr.ip());
    }

    /// Connects to the first of `addrs` that accepts, in order, by the
    /// deadline; the last failure is the verdict.
    async fn connect(&mut self, addrs: &[SocketAddr]) -> Result<TcpStream, Fail> {
        let mut failed = Fail::Reason(Reason::Unreachable);
        for &addr in addrs {
            self.used(addr);
            match self.within(TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    self.log(format!("Connected to {addr}"));
                    return Ok(stream);
                }
                Ok(Err(e)) => {
                    self.log(format!("Connecting to {addr} failed: {e}"));
                    failed = connect_failure(&e);
                    if matches!(failed, Fail::Ours(_)) {
                        return Err(failed);
                    }
                }
                Err(timeout) => {
                    self.log(format!("Connecting to {addr} timed out"));
                    return Err(timeout);
                }
            }
        }
        Err(failed)
    }

    async fn handshake(
        &mut self,
        stream: TcpStream,
        host: &str,
        module: &crate::modules::TlsModule,
    ) -> Result<Conn, Fail> {
        match self.within(tls::handshake(stream, host, module)).await? {
            Ok((stream, done)) => {
                self.log(format!("TLS handshake done: {}", done.version));
                self.report.tls = Some(TlsSeen {
                    version: Some(done.version),
                    dates: done.dates,
                });
                Ok(Conn::Tls(Box::new(stream)))
            }
            Err(failed) => {
                self.log(format!("TLS handshake failed: {}", failed.error));
                self.report.tls = Some(TlsSeen {
                    version: None,
                    dates: failed.dates,
                });
                Err(Reason::Tls.into())
            }
        }
    }

    async fn tcp(&mut self, m: &TcpModule, host: &str, port: u16, tls: bool) -> Result<(), Fail> {
        self.report.regex_failed = Some(false);
        let addrs = self.resolve(host, port, m.ip).await?;
        let stream = self.connect(&addrs).await?;
        let mut conn = if m.tls || tls {
            self.handshake(stream, host, &m.tls_config).await?
        } else {
            Conn::Plain(stream)
        };
        let mut lines = Lines::default();
        for (i, qr) in m.query_response.iter().enumerate() {
            let mut send = qr.send.clone();
            if let Some(expect) = &qr.expect {
                loop {
                    let line = match self.within(lines.next(&mut conn)).await? {
                        Ok(Some(line)) => line,
                        Ok(None) => {
                            self.log(format!(
                                "query_response[{i}]: connection closed before a line matched {expect}"
                            ));
                            self.report.regex_failed = Some(true);
                            return Err(Reason::NoMatch.into());
                        }
                        Err(e) => {
                            self.log(format!("query_response[{i}]: reading failed: {e}"));
                            return Err(Reason::Closed.into());
                        }
                    };
                    if let Some(caps) = expect.captures(&line) {
                        self.log(format!(
                            "query_response[{i}]: {expect} matched {:?}",
                            String::from_utf8_lossy(&line)
                        ));
                        if let Some(s) = &send {
                            let mut out = Vec::new();
                            caps.expand(s.as_bytes(), &mut out);
                            send = Some(String::from_utf8_lossy(&out).into_owned());
                        }
                        break;
                    }
                }
            }
            if let Some(s) = send {
                let mut line = s.into_bytes();
                line.push(b'\n');
                match self.within(conn.write_all(&line)).await? {
                    Ok(()) => self.log(format!("query_response[{i}]: sent a line")),
                    Err(e) => {
                        self.log(format!("query_response[{i}]: sending failed: {e}"));
                        return Err(Reason::Closed.into());
                    }
                }
            }
            if qr.starttls {
                let Conn::Plain(stream) = conn else {
                    self.log(format!("query_response[{i}]: starttls on a TLS connection"));
                    return Err(Reason::Tls.into());
                };
                conn = self.handshake(stream, host, &m.tls_config).await?;
                lines = Lines::default();
            }
        }
        Ok(())
    }

    async fn udp(&mut self, m: &UdpModule, host: &str, port: u16) -> Result<(), Fail> {
        // One datagram, to the first address: UDP says nothing of the
        // others' worth before the timeout.
        let addr = self.resolve(host, port, m.ip).await?[0];
        let left = self.deadline.saturating_duration_since(Deadline::now());
        let (outcome, _) = udp::probe(addr, &Via::Here, &m.payload, left).await;
        self.report.udp_class = Some(outcome.class());
        self.log(format!("UDP {addr}: {}", outcome.class()));
        match outcome {
            UdpOutcome::Open { reply } => match &m.expect {
                Some(expect) if !expect.is_match(&reply) => {
                    self.log(format!(
                        "The reply {:?} does not match {expect}",
                        String::from_utf8_lossy(&reply)
                    ));
                    self.report.regex_failed = Some(true);
                    Err(Reason::NoMatch.into())
                }
                Some(_) => {
                    self.report.regex_failed = Some(false);
                    Ok(())
                }
                None => Ok(()),
            },
            UdpOutcome::Closed => Err(Reason::Closed.into()),
            UdpOutcome::OpenFiltered if m.silence_is_success => Ok(()),
            UdpOutcome::OpenFiltered => Err(Reason::Timeout.into()),
            UdpOutcome::Unreachable => Err(Reason::Unreachable.into()),
            UdpOutcome::Error(why) => Err(Fail::Ours(why)),
        }
    }

    async fn http(&mut self, m: &HttpModule, first: &Endpoint) -> Result<(), Fail> {
        let mut seen = HttpSeen {
            content_length: -1,
            ..HttpSeen::default()
        };
        let result = self.http_exchanges(m, first, &mut seen).await;
        self.report.http = Some(seen);
        result
    }

    async fn http_exchanges(
        &mut self,
        m: &HttpModule,
        first: &Endpoint,
        seen: &mut HttpSeen,
    ) -> Result<(), Fail> {
        self.report.regex_failed = Some(false);
        let Endpoint::Http {
            tls,
            host,
            port,
            path,
        } = first
        else {
            return Err(Reason::Unreachable.into());
        };
        let mut url = Url {
            tls: *tls,
            host: host.clone(),
            port: *port,
            path: path.clone(),
        };
        let mut method = m.method.clone();
        let mut body = m.body.clone();
        loop {
            let resolved_before = self.report.resolve_seconds;
            let addrs = self.resolve(&url.host, url.port, m.ip).await?;
            seen.phases[0] += self.report.resolve_seconds - resolved_before;
            let t_connect = Instant::now();
            let stream = self.connect(&addrs).await?;
            seen.phases[1] += t_connect.elapsed().as_secs_f64();
            seen.ssl = url.tls;
            let mut conn = if url.tls {
                let t_tls = Instant::now();
                let conn = self.handshake(stream, &url.host, &m.tls_config).await;
                seen.phases[2] += t_tls.elapsed().as_secs_f64();
                conn?
            } else {
                Conn::Plain(stream)
            };
            let t_asked = Instant::now();
            let request = request(m, &method, body.as_deref(), &url);
            match self.within(conn.write_all(&request)).await? {
                Ok(()) => {}
                Err(e) => {
                    self.log(format!("Sending the request failed: {e}"));
                    return Err(Reason::Closed.into());
                }
            }
            let mut reader = Lines::default();
            let head = match self.within(reader.head(&mut conn)).await {
                Ok(Ok(head)) => head,
                Ok(Err(why)) => {
                    self.log(format!("No HTTP response: {why}"));
                    return Err(match why {
                        HeadError::Closed => Reason::Closed,
                        HeadError::Invalid => Reason::NoMatch,
                    }
                    .into());
                }
                Err(e) => {
                    self.log("No HTTP response by the deadline".into());
                    return Err(e);
                }
            };
            let t_first_byte = reader.first_byte.unwrap_or_else(Instant::now);
            seen.phases[3] += t_first_byte.duration_since(t_asked).as_secs_f64();
            seen.status = head.status;
            seen.version = if head.minor == 0 { 1.0 } else { 1.1 };
            seen.content_length = head
                .header("content-length")
                .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse().ok())
                .unwrap_or(-1);
            self.log(format!("Received HTTP response: status {}", head.status));
            let location = head
                .header("location")
                .map(|l| String::from_utf8_lossy(l).into_owned());
            if (300..400).contains(&head.status)
                && let Some(location) = location
                && m.follow_redirects
                && seen.redirects < MAX_REDIRECTS
            {
                match url.join(&location) {
                    Some(next) => {
                        self.log(format!("Following redirect to {location}"));
                        seen.redirects += 1;
                        if matches!(head.status, 301..=303) && method != "HEAD" {
                            method = "GET".into();
                            body = None;
                        }
                        url = next;
                        seen.phases[4] += t_first_byte.elapsed().as_secs_f64();
                        continue;
                    }
                    None => self.log(format!("Not following the redirect to {location:?}")),
                }
            }
            let mut ok = true;
            let valid = if m.valid_status_codes.is_empty() {
                (200..300).contains(&head.status)
            } else {
                m.valid_status_codes.contains(&head.status)
            };
            let mut reason = None;
            if !valid {
                self.log(format!("Invalid HTTP status {}", head.status));
                ok = false;
                reason = Some(Reason::HttpStatus);
            }
            if ok && !self.headers_match(m, &head) {
                self.report.regex_failed = Some(true);
                ok = false;
                reason = Some(Reason::NoMatch);
            }
            let no_body = method == "HEAD" || matches!(head.status, 100..=199 | 204 | 304);
            let read = if no_body {
                Ok(Vec::new())
            } else {
                match self.within(reader.body(&mut conn, &head)).await {
                    Ok(r) => r,
                    Err(_) => Err(BodyError::Timeout),
                }
            };
            seen.phases[4] += t_first_byte.elapsed().as_secs_f64();
            let body_bytes = match read {
                Ok(b) => b,
                Err(e) => {
                    self.log(format!("Reading the body failed: {}", e.as_str()));
                    seen.body_bytes = reader.body_read as u64;
                    return Err(reason
                        .unwrap_or(match e {
                            BodyError::Timeout => Reason::Timeout,
                            BodyError::Closed => Reason::Closed,
                        })
                        .into());
                }
            };
            seen.body_bytes = body_bytes.len() as u64;
            if ok && (!m.fail_if_body_matches.is_empty() || !m.fail_if_body_not_matches.is_empty())
            {
                for r in &m.fail_if_body_matches {
                    if r.is_match(&body_bytes) {
                        self.log(format!("Body matched {r}"));
                        ok = false;
                    }
                }
                for r in &m.fail_if_body_not_matches {
                    if !r.is_match(&body_bytes) {
                        self.log(format!("Body did not match {r}"));
                        ok = false;
                    }
                }
                if !ok {
                    self.report.regex_failed = Some(true);
                    reason = Some(Reason::NoMatch);
                }
            }
            let version = format!("HTTP/1.{}", head.minor);
            if !m.valid_http_versions.is_empty() && !m.valid_http_versions.contains(&version) {
                self.log(format!("Invalid HTTP version {version}"));
                ok = false;
                reason = reason.or(Some(Reason::NoMatch));
            }
            if (url.tls && m.fail_if_ssl) || (!url.tls && m.fail_if_not_ssl) {
                self.log(format!(
                    "Final request was {}over TLS, the module says it must {}",
                    if url.tls { "" } else { "not " },
                    if url.tls { "not be" } else { "be" }
                ));
                ok = false;
                reason = reason.or(Some(Reason::Tls));
            }
            return match reason {
                Some(r) if !ok => Err(r.into()),
                _ => Ok(()),
            };
        }
    }

    /// The header checks, as blackbox_exporter's: a header either list
    /// names must be there unless `allow_missing`.
    fn headers_match(&mut self, m: &HttpModule, head: &Head) -> bool {
        let mut ok = true;
        let lists = [
            (&m.fail_if_header_matches, true),
            (&m.fail_if_header_not_matches, false),
        ];
        for (list, fail_on_match) in lists {
            for hm in list {
                let values = head.all(&hm.header);
                if values.is_empty() {
                    if !hm.allow_missing {
                        self.log(format!("Header {} is missing", hm.header));
                        ok = false;
                    }
                    continue;
                }
                let matched = values.iter().any(|v| hm.regexp.is_match(v));
                if matched == fail_on_match {
                    self.log(format!(
                        "Header {} {} {}",
                        hm.header,
                        if matched { "matched" } else { "did not match" },
                        hm.regexp
                    ));
                    ok = false;
                }
            }
        }
        ok
    }
}

fn connect_failure(e: &io::Error) -> Fail {
    if let Some(ours) = super::our_fault(e) {
        return Fail::Ours(ours);
    }
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => Reason::Refused.into(),
        Some(libc::ETIMEDOUT) => Reason::Timeout.into(),
        _ => Reason::Unreachable.into(),
    }
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Url {
    tls: bool,
    host: String,
    port: u16,
    path: String,
}

impl Url {
    /// The `Host` header: the port only when it is not the scheme's.
    fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == if self.tls { 443 } else { 80 } {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// A `Location` taken relative to this URL: absolute (http or https),
    /// scheme-relative, absolute path or relative path.
    fn join(&self, location: &str) -> Option<Url> {
        let location = location.trim();
        if location.contains("://") {
            return match parse_endpoint(location).ok()? {
                Endpoint::Http {
                    tls,
                    host,
                    port,
                    path,
                } => Some(Url {
                    tls,
                    host,
                    port,
                    path,
                }),
                _ => None,
            };
        }
        if let Some(rest) = location.strip_prefix("//") {
            let scheme = if self.tls { "https" } else { "http" };
            return self.join(&format!("{scheme}://{rest}"));
        }
        if location
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return None;
        }
        let path = if location.starts_with('/') {
            location.to_string()
        } else {
            let base = self.path.split('?').next().unwrap_or("/");
            let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
            format!("{dir}{location}")
        };
        let path = path.split('#').next().unwrap_or("/").to_string();
        Some(Url {
            path: if path.is_empty() { "/".into() } else { path },
            ..self.clone()
        })
    }
}

fn request(m: &HttpModule, method: &str, body: Option<&str>, url: &Url) -> Vec<u8> {
    let has = |name: &str| m.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    let mut out = String::with_capacity(256);
    let _ = write!(out, "{method} {} HTTP/1.1\r\n", url.path);
    if !has("host") {
        let _ = write!(out, "Host: {}\r\n", url.authority());
    }
    if !has("user-agent") {
        let _ = write!(
            out,
            "User-Agent: portwarden/{}\r\n",
            env!("CARGO_PKG_VERSION")
        );
    }
    if !has("accept") {
        out.push_str("Accept: */*\r\n");
    }
    for (k, v) in &m.headers {
        if !k.eq_ignore_ascii_case("connection") && !k.eq_ignore_ascii_case("content-length") {
            let _ = write!(out, "{k}: {v}\r\n");
        }
    }
    if let Some(auth) = &m.authorization
        && !has("authorization")
    {
        let _ = write!(out, "Authorization: {auth}\r\n");
    }
    if let Some(b) = body {
        let _ = write!(out, "Content-Length: {}\r\n", b.len());
    }
    out.push_str("Connection: close\r\n\r\n");
    if let Some(b) = body {
        out.push_str(b);
    }
    out.into_bytes()
}

/// A response's status line and headers.
#[derive(Debug)]
struct Head {
    status: u16,
    minor: u8,
    headers: Vec<(String, Vec<u8>)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    fn all(&self, name: &str) -> Vec<&[u8]> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
            .collect()
    }
}

#[derive(Debug)]
enum HeadError {
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

enum BodyError {
    Closed,
    Timeout,
}

impl BodyError {
    fn as_str(&self) -> &'static str {
        match self {
            BodyError::Closed => "closed before the whole body, or a malformed chunk",
            BodyError::Timeout => "not whole by the deadline",
        }
    }
}

/// Bytes read from a connection, taken a line, a head or a body at a time.
#[derive(Default)]
struct Lines {
    buf: Vec<u8>,
    eof: bool,
    first_byte: Option<Instant>,
    body_read: usize,
}

impl Lines {
    /// Reads more; false at the end of the stream.
    async fn fill(&mut self, conn: &mut Conn) -> io::Result<bool> {
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
    async fn next(&mut self, conn: &mut Conn) -> io::Result<Option<Vec<u8>>> {
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

    async fn head(&mut self, conn: &mut Conn) -> Result<Head, HeadError> {
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
    async fn body(&mut self, conn: &mut Conn, head: &Head) -> Result<Vec<u8>, BodyError> {
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
    async fn take(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn url(path: &str) -> Url {
        Url {
            tls: false,
            host: "a.test".into(),
            port: 8080,
            path: path.into(),
        }
    }

    #[test]
    fn redirects_are_taken_relative_to_the_request() {
        let base = url("/dir/page?x=1");
        assert_eq!(base.join("/login").expect("abs").path, "/login");
        assert_eq!(base.join("other").expect("rel").path, "/dir/other");
        let far = base.join("https://b.test/x").expect("full");
        assert_eq!(
            (far.tls, far.host.as_str(), far.port),
            (true, "b.test", 443)
        );
        let same = base.join("//c.test:81/y").expect("scheme-relative");
        assert_eq!(
            (same.tls, same.host.as_str(), same.port),
            (false, "c.test", 81)
        );
        assert_eq!(base.join("ftp://x/"), None);
    }

    #[test]
    fn the_request_carries_a_proper_host() {
        let m = HttpModule::default();
        let text = String::from_utf8(request(&m, "GET", None, &url("/health"))).expect("ascii");
        assert!(
            text.starts_with("GET /health HTTP/1.1\r\nHost: a.test:8080\r\n"),
            "{text}"
        );
        assert!(text.ends_with("Connection: close\r\n\r\n"));
        let v6 = Url {
            tls: true,
            host: "::1".into(),
            port: 443,
            path: "/".into(),
        };
        assert_eq!(v6.authority(), "[::1]");
    }

    #[test]
    fn a_target_must_fit_its_module() {
        let modules = crate::modules::Modules::builtin();
        let get = |n: &str| modules.get(n).expect("builtin").clone();
        assert!(plan(&get("http_2xx"), "127.0.0.1:80").is_ok());
        assert!(matches!(
            plan(&get("udp"), "127.0.0.1:53"),
            Ok(Endpoint::Udp { .. })
        ));
        let err = plan(&get("tcp_connect"), "https://x/").expect_err("url for tcp");
        assert!(err.contains("does not fit module 'tcp_connect'"), "{err}");
    }
}
