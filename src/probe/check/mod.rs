//! A check of one target by one module — the work behind the targets file,
//! `/probe` and `portwarden check`. The host is resolved at every check (DNS
//! changes); the whole check ends by its deadline whatever the other side
//! does; at most one connection is open at a time; what is read is bounded
//! (64 KiB of headers or of one line, 1 MiB of body); no proxy is used. A
//! failed check is data — a [`Reason`] from one small vocabulary shared by
//! every kind — and a check we could not even try for a lack of our own
//! (descriptors, memory) says so in [`Report::ours`] rather than failing
//! the target.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant as Deadline;

use super::Via;
use super::tls::{self, CertDates};
use super::udp::{self, UdpOutcome};
use crate::modules::{IpPreference, Module, Prober, TcpModule, UdpModule};
use crate::value::cidr::{Allow, Cidr};
use read::Lines;

mod http;
mod read;
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
    /// Every address of a hop is one the check may not connect to
    /// ([`Destinations`]).
    Denied,
}

impl Reason {
    pub const ALL: [Reason; 9] = [
        Reason::Refused,
        Reason::Timeout,
        Reason::Unreachable,
        Reason::Dns,
        Reason::Tls,
        Reason::HttpStatus,
        Reason::NoMatch,
        Reason::Closed,
        Reason::Denied,
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
            Reason::Denied => "denied",
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
    /// What happened, for people, when it failed: `nothing listens on
    /// 127.0.0.1:1`, `the server answered in plain text, not TLS`.
    pub detail: Option<String>,
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
            detail: None,
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

/// Where a check may connect. Applied to every address of every hop (each
/// redirect is a hop, resolved anew): an address in `deny` is never
/// connected to — at the first hop only when `deny_first` (a target an
/// operator wrote is theirs to choose; one from `/probe`'s caller is not) —
/// and with `allow`, a hop's host must be one of its names or its addresses
/// in one of its networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Destinations {
    pub deny: Vec<Cidr>,
    pub deny_first: bool,
    pub allow: Allow,
}

impl Destinations {
    /// Of `addrs`, those hop `hop` (0: the target itself) of a check may
    /// use to reach `host`, and why the others may not.
    fn admit(
        &self,
        hop: u32,
        host: &str,
        addrs: Vec<SocketAddr>,
    ) -> (Vec<SocketAddr>, Vec<(SocketAddr, &'static str)>) {
        let allow = &self.allow;
        let named = allow.hosts.iter().any(|h| h.eq_ignore_ascii_case(host));
        let mut denied = Vec::new();
        let kept = addrs
            .into_iter()
            .filter(|a| {
                let ip = a.ip();
                let why = if (hop > 0 || self.deny_first)
                    && self.deny.iter().any(|n| n.contains(ip))
                {
                    Some("in the deny list (--probe.deny)")
                } else if !allow.is_empty() && !named && !allow.nets.iter().any(|n| n.contains(ip))
                {
                    Some("not in the allow list (--web.probe-allow)")
                } else {
                    None
                };
                if let Some(why) = why {
                    denied.push((*a, why));
                }
                why.is_none()
            })
            .collect();
        (kept, denied)
    }
}

/// Checks `endpoint` (from [`plan`]) by `module`, ending by `timeout`,
/// connecting only where `dest` allows.
pub async fn run(
    endpoint: &Endpoint,
    module: &Module,
    timeout: Duration,
    dest: &Destinations,
) -> Report {
    let started = Instant::now();
    let mut c = Check {
        started,
        deadline: Deadline::now() + timeout,
        report: Report::failed_before_start(),
        dest: dest.clone(),
        hops: 0,
        why: None,
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
            let why = c.why.take().unwrap_or_else(|| r.words(timeout));
            c.report.detail = Some(why);
        }
        Err(Fail::Ours(why)) => {
            c.log(format!("Probe not tried: {why} (ours, not the target's)"));
            c.report.ours = Some(why);
            c.report.detail = Some(format!("not checked: {why} (ours, not the target's)"));
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
    dest: Destinations,
    /// Hosts resolved so far: the next is hop `hops`.
    hops: u32,
    /// The last failure in words, for [`Report::detail`].
    why: Option<String>,
}

impl Check {
    fn log(&mut self, line: String) {
        let at = self.started.elapsed().as_secs_f64();
        self.report.log.push(format!("{at:>9.6}s {line}"));
    }

    /// Logs a failure and keeps `why`, its words for people.
    fn fail(&mut self, line: String, why: String) {
        self.log(line);
        self.why = Some(why);
    }

    /// Logs a failure; keeps its words when it is the `first` of an
    /// answer's (the verdict's reason is the first one's).
    fn fail_first(&mut self, first: bool, line: String, why: String) {
        match first {
            true => self.fail(line, why),
            false => self.log(line),
        }
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
                .inspect_err(|_| {
                    self.fail(
                        format!("Resolving {host} timed out"),
                        format!("resolving {host} took longer than the timeout"),
                    )
                })?;
            let addrs: Vec<SocketAddr> = match found {
                Ok(addrs) => addrs.collect(),
                Err(e) => {
                    self.fail(format!("Resolving {host} failed: {e}"), dns_words(host, &e));
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
                let family = if ip.v6_first { "IPv6" } else { "IPv4" };
                let (line, why) = match ip.fallback {
                    true => (
                        format!("Resolving {host}: no {family} addresses at all"),
                        format!("{host} has no address"),
                    ),
                    false => (
                        format!("Resolving {host}: no {family} address (no fallback)"),
                        format!("{host} has no {family} address (and the module allows no other)"),
                    ),
                };
                self.fail(line, why);
                return Err(Reason::Dns.into());
            }
            chosen
        };
        self.report.resolve_seconds += t.elapsed().as_secs_f64();
        let hop = self.hops;
        self.hops += 1;
        let (chosen, denied) = self.dest.admit(hop, host, chosen);
        for (addr, why) in &denied {
            self.log(format!("Not connecting to {}: {why}", addr.ip()));
        }
        if chosen.is_empty() {
            if let Some((addr, why)) = denied.first() {
                self.used(*addr);
                self.why = Some(format!(
                    "{} is in a network checks may not connect to ({why})",
                    addr.ip()
                ));
            }
            return Err(Reason::Denied.into());
        }
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
                    // An earlier address's failure is not the verdict.
                    self.why = None;
                    return Ok(stream);
                }
                Ok(Err(e)) => {
                    self.fail(
                        format!("Connecting to {addr} failed: {e}"),
                        connect_words(addr, &e),
                    );
                    failed = connect_failure(&e);
                    if matches!(failed, Fail::Ours(_)) {
                        return Err(failed);
                    }
                }
                Err(timeout) => {
                    self.fail(
                        format!("Connecting to {addr} timed out"),
                        format!("{addr} did not answer within the timeout (a firewall dropping the SYN, or a host down)"),
                    );
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
                self.fail(
                    format!("TLS handshake failed: {}", failed.error),
                    tls_words(&failed.error, host),
                );
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
                            self.fail(
                                format!(
                                    "query_response[{i}]: connection closed before a line matched {expect}"
                                ),
                                format!("the server closed the connection before a line matched {expect}"),
                            );
                            self.report.regex_failed = Some(true);
                            return Err(Reason::NoMatch.into());
                        }
                        Err(e) => {
                            self.fail(
                                format!("query_response[{i}]: reading failed: {e}"),
                                format!("reading the answer failed: {}", plain(&e)),
                            );
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
                        self.fail(
                            format!("query_response[{i}]: sending failed: {e}"),
                            format!("the connection closed while sending: {}", plain(&e)),
                        );
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
                    self.fail(
                        format!(
                            "The reply {:?} does not match {expect}",
                            String::from_utf8_lossy(&reply)
                        ),
                        format!("the reply did not match {expect}"),
                    );
                    self.report.regex_failed = Some(true);
                    Err(Reason::NoMatch.into())
                }
                Some(_) => {
                    self.report.regex_failed = Some(false);
                    Ok(())
                }
                None => Ok(()),
            },
            UdpOutcome::Closed => {
                self.why = Some(format!(
                    "{addr} answered \"port unreachable\": nothing listens on it"
                ));
                Err(Reason::Closed.into())
            }
            UdpOutcome::OpenFiltered if m.silence_is_success => Ok(()),
            UdpOutcome::OpenFiltered => {
                self.why = Some(format!(
                    "no reply from {addr} within the timeout (open but silent, or filtered)"
                ));
                Err(Reason::Timeout.into())
            }
            UdpOutcome::Unreachable => {
                self.why = Some(format!("{addr}: the host or network is unreachable"));
                Err(Reason::Unreachable.into())
            }
            UdpOutcome::Error(why) => Err(Fail::Ours(why)),
        }
    }
}

fn connect_failure(e: &io::Error) -> Fail {
    if let Some(ours) = super::our_fault(e) {
        return Fail::Ours(ours);
    }
    // By kind, which std gives errno and Winsock's errors alike.
    use io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => Reason::Refused.into(),
        K::TimedOut => Reason::Timeout.into(),
        // Something answered, then dropped us: the port, not the route.
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => Reason::Closed.into(),
        _ => Reason::Unreachable.into(),
    }
}

/// An I/O error without its `(os error N)` tail.
fn plain(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// A failed connect to `addr`, in words.
fn connect_words(addr: SocketAddr, e: &io::Error) -> String {
    use io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => format!("nothing listens on {addr}"),
        K::TimedOut => format!("{addr} did not answer"),
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => {
            format!("{addr} dropped the connection")
        }
        K::HostUnreachable => format!("{addr}: no route to the host"),
        K::NetworkUnreachable => format!("{addr}: the network is unreachable"),
        _ => format!("{addr}: {}", plain(e)),
    }
}

/// A failed lookup of `host`, in words.
fn dns_words(host: &str, e: &io::Error) -> String {
    let text = e.to_string().to_ascii_lowercase();
    if ["not known", "no address", "failed to lookup", "nxdomain"]
        .iter()
        .any(|m| text.contains(m))
    {
        format!("{host}: no such host")
    } else {
        format!("{host}: the lookup failed ({})", plain(e))
    }
}

/// A failed TLS handshake, in words: what a person can act on.
fn tls_words(e: &io::Error, host: &str) -> String {
    let text = e.to_string();
    let has = |m: &str| text.contains(m);
    if has("InvalidContentType") || has("corrupt message") || has("CorruptMessage") {
        "the server answered in plain text (HTTP?), not TLS".into()
    } else if has("Expired") {
        "the server\'s certificate has expired".into()
    } else if has("NotValidYet") {
        "the server\'s certificate is not valid yet".into()
    } else if has("NotValidForName") {
        format!("the server\'s certificate is not valid for {host}")
    } else if has("UnknownIssuer") {
        "the server\'s certificate is signed by an authority not trusted here (ca_file?)".into()
    } else if has("eof") || has("EOF") || has("closed") {
        "the server closed the connection during the handshake".into()
    } else if has("AlertReceived") || has("alert") {
        format!("the server refused the handshake ({text})")
    } else {
        format!("the handshake failed: {text}")
    }
}

impl Reason {
    /// The words for a failure no step described (a deadline passed
    /// between steps, an answer out of the module's bounds).
    pub fn words(self, timeout: Duration) -> String {
        match self {
            Reason::Refused => "the connection was refused".into(),
            Reason::Timeout => format!("no answer within the timeout ({timeout:?})"),
            Reason::Unreachable => "the target cannot be reached".into(),
            Reason::Dns => "the name did not resolve".into(),
            Reason::Tls => "the TLS handshake failed".into(),
            Reason::HttpStatus => "the server answered a status the module does not accept".into(),
            Reason::NoMatch => "the answer did not match what the module expects".into(),
            Reason::Closed => "the server closed the connection before answering".into(),
            Reason::Denied => "the address is in a network checks may not connect to".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
