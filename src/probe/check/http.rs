//! The HTTP prober: a request with a proper `Host`, redirects followed as
//! the module says (at most 10, as blackbox_exporter), the status, the
//! headers and the body checked against the module's expectations.

use std::fmt::Write as _;
use std::time::Instant;

use super::read::{BodyError, Head, HeadError, Lines};
use super::{Check, Conn, Fail, HttpSeen, MAX_REDIRECTS, Reason};
use crate::modules::HttpModule;
use crate::targets::{Endpoint, parse_endpoint};

impl Check {
    pub(super) async fn http(&mut self, m: &HttpModule, first: &Endpoint) -> Result<(), Fail> {
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
                // What an earlier hop's handshake showed is not this one's.
                self.report.tls = None;
                Conn::Plain(stream)
            };
            let t_asked = Instant::now();
            let request = request(m, &method, body.as_deref(), &url);
            match self.within(conn.write_all(&request)).await? {
                Ok(()) => {}
                Err(e) => {
                    self.fail(
                        format!("Sending the request failed: {e}"),
                        format!("the connection closed while sending the request ({e})"),
                    );
                    return Err(Reason::Closed.into());
                }
            }
            let mut reader = Lines::default();
            let head = match self.within(reader.head(&mut conn)).await {
                Ok(Ok(head)) => head,
                Ok(Err(why)) => {
                    self.fail(
                        format!("No HTTP response: {why}"),
                        match why {
                            HeadError::Closed => {
                                "the server closed the connection without an HTTP answer".into()
                            }
                            HeadError::Invalid => "the answer was not HTTP".to_string(),
                        },
                    );
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
                self.fail(
                    format!("Invalid HTTP status {}", head.status),
                    match m.valid_status_codes.is_empty() {
                        true => format!("the server answered HTTP {}, not 2xx", head.status),
                        false => format!(
                            "the server answered HTTP {}, not one of {:?}",
                            head.status, m.valid_status_codes
                        ),
                    },
                );
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
                    self.fail(
                        format!("Reading the body failed: {}", e.as_str()),
                        format!("reading the body failed: {}", e.as_str()),
                    );
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
                        self.fail_first(
                            ok,
                            format!("Body matched {r}"),
                            format!("the body matched {r}"),
                        );
                        ok = false;
                    }
                }
                for r in &m.fail_if_body_not_matches {
                    if !r.is_match(&body_bytes) {
                        self.fail_first(
                            ok,
                            format!("Body did not match {r}"),
                            format!("the body did not match {r}"),
                        );
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
                self.fail_first(
                    ok,
                    format!("Invalid HTTP version {version}"),
                    format!("the server answered {version}, which the module does not accept"),
                );
                ok = false;
                reason = reason.or(Some(Reason::NoMatch));
            }
            if (url.tls && m.fail_if_ssl) || (!url.tls && m.fail_if_not_ssl) {
                let (was, must) = match url.tls {
                    true => ("", "not be"),
                    false => ("not ", "be"),
                };
                self.fail_first(
                    ok,
                    format!("Final request was {was}over TLS, the module says it must {must}"),
                    format!("the request went {was}over TLS; the module says it must {must}"),
                );
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
                        self.fail_first(
                            ok,
                            format!("Header {} is missing", hm.header),
                            format!("the answer has no {} header", hm.header),
                        );
                        ok = false;
                    }
                    continue;
                }
                let matched = values.iter().any(|v| hm.regexp.is_match(v));
                if matched == fail_on_match {
                    let how = if matched { "matched" } else { "did not match" };
                    self.fail_first(
                        ok,
                        format!("Header {} {how} {}", hm.header, hm.regexp),
                        format!("the {} header {how} {}", hm.header, hm.regexp),
                    );
                    ok = false;
                }
            }
        }
        ok
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
            let _ = write!(out, "{k}: {}\r\n", v.0);
        }
    }
    if let Some(auth) = &m.authorization
        && !has("authorization")
    {
        let _ = write!(out, "Authorization: {}\r\n", auth.0);
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
}
