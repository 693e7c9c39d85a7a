//! Modules: how a target is checked, in blackbox_exporter's own file format
//! (`--modules.file`; a `blackbox.yml` works as it is). Probers `tcp` (with
//! `tls` and `query_response`), `http` and `udp` (ours) are ours to run;
//! `icmp`, `dns` and `grpc` modules load with one warning and are refused
//! when asked for. An unknown key inside a module we run is an error naming
//! the file, the module and the key: a check must never silently do less
//! than its file says. Everything is compiled here, at load (regular
//! expressions, certificate files), so a check never fails on its module.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use regex::bytes::Regex;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

/// Every module by name.
#[derive(Debug, Clone)]
pub struct Modules {
    by_name: BTreeMap<String, Arc<Module>>,
}

/// One module, ready to run.
#[derive(Debug)]
pub struct Module {
    pub name: String,
    /// The module's own timeout; the caller's bound applies when shorter.
    pub timeout: Option<Duration>,
    pub prober: Prober,
}

#[derive(Debug)]
pub enum Prober {
    Tcp(TcpModule),
    Http(Box<HttpModule>),
    Udp(UdpModule),
    /// A blackbox prober we do not have (`icmp`, `dns`, `grpc`, …).
    Unsupported(String),
}

impl Prober {
    pub fn name(&self) -> &str {
        match self {
            Prober::Tcp(_) => "tcp",
            Prober::Http(_) => "http",
            Prober::Udp(_) => "udp",
            Prober::Unsupported(name) => name,
        }
    }
}

/// Which address family is tried first, and whether the other may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpPreference {
    pub v6_first: bool,
    /// The other family when a name has no address of the first.
    pub fallback: bool,
    /// Every address of the name in turn, the first family's first, until
    /// one accepts (`nc -z`'s way): the built-in modules'. A file's modules
    /// keep blackbox_exporter's meaning, the first family's addresses only.
    pub every_address: bool,
}

impl Default for IpPreference {
    /// blackbox_exporter's: IPv6 first, IPv4 when a name has no IPv6
    /// address.
    fn default() -> Self {
        IpPreference {
            v6_first: true,
            fallback: true,
            every_address: false,
        }
    }
}

#[derive(Debug, Default)]
pub struct TcpModule {
    pub ip: IpPreference,
    pub tls: bool,
    pub tls_config: TlsModule,
    pub query_response: Vec<QueryResponse>,
}

#[derive(Debug)]
pub struct QueryResponse {
    /// Lines are read until one matches; `${1}` in `send` takes its groups.
    pub expect: Option<Regex>,
    pub send: Option<String>,
    pub starttls: bool,
}

#[derive(Debug)]
pub struct HttpModule {
    pub ip: IpPreference,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    /// Empty: any 2xx.
    pub valid_status_codes: Vec<u16>,
    /// Empty: any (`HTTP/1.1`, `HTTP/1.0`).
    pub valid_http_versions: Vec<String>,
    pub follow_redirects: bool,
    pub fail_if_ssl: bool,
    pub fail_if_not_ssl: bool,
    pub fail_if_body_matches: Vec<Regex>,
    pub fail_if_body_not_matches: Vec<Regex>,
    pub fail_if_header_matches: Vec<HeaderMatch>,
    pub fail_if_header_not_matches: Vec<HeaderMatch>,
    /// The `Authorization` header's value (basic auth or bearer token).
    pub authorization: Option<String>,
    pub tls_config: TlsModule,
}

#[derive(Debug)]
pub struct HeaderMatch {
    pub header: String,
    pub regexp: Regex,
    pub allow_missing: bool,
}

#[derive(Debug, Default)]
pub struct UdpModule {
    pub ip: IpPreference,
    pub payload: Vec<u8>,
    /// A reply must match, when set.
    pub expect: Option<Regex>,
    /// Silence (`open|filtered`) counts as success.
    pub silence_is_success: bool,
}

/// A module's `tls_config`, loaded.
#[derive(Debug, Clone)]
pub struct TlsModule {
    pub insecure_skip_verify: bool,
    /// From `ca_file`; `None`: the system's roots.
    pub roots: Option<Arc<RootCertStore>>,
    pub server_name: Option<String>,
    pub client_cert: Option<Arc<ClientCert>>,
    /// Allowed versions, as 12 and 13.
    pub min_version: u8,
    pub max_version: u8,
}

impl Default for TlsModule {
    /// Verified against the system's roots, TLS 1.2 or 1.3.
    fn default() -> Self {
        TlsModule {
            insecure_skip_verify: false,
            roots: None,
            server_name: None,
            client_cert: None,
            min_version: 12,
            max_version: 13,
        }
    }
}

#[derive(Debug)]
pub struct ClientCert {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Modules {
    /// The built-in modules alone: `tcp_connect`, `http_2xx`, `tls_connect`,
    /// `udp`.
    pub fn builtin() -> Modules {
        let mut by_name = BTreeMap::new();
        for module in builtins() {
            by_name.insert(module.name.clone(), Arc::new(module));
        }
        Modules { by_name }
    }

    /// Reads a blackbox-format file; its modules are added to the built-in
    /// ones (a module of the same name replaces the built-in). Returns the
    /// modules and one warning per module whose prober we do not have.
    pub fn load(path: &Path) -> Result<(Modules, Vec<String>), String> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| format!("{file}: {e}"))?;
        Modules::parse(&text, &file, path.parent().unwrap_or(Path::new(".")))
    }

    /// As [`Modules::load`], from text; relative certificate paths are
    /// taken from `dir`.
    pub fn parse(text: &str, file: &str, dir: &Path) -> Result<(Modules, Vec<String>), String> {
        let doc: FileDoc = serde_saphyr::from_str(text)
            .map_err(|e| format!("{file}: {}", crate::error::one_line(&e.to_string())))?;
        let mut modules = Modules::builtin();
        let mut warnings = Vec::new();
        for (name, raw) in doc.modules {
            let at = |key: &str, why: String| format!("{file}: modules.{name}.{key}: {why}");
            let module = compile(&name, raw, dir, &at)?;
            if let Prober::Unsupported(p) = &module.prober {
                warnings.push(format!(
                    "{file}: module '{name}' uses the {p} prober, which portwarden does not have: asking for it answers 400"
                ));
            }
            modules.by_name.insert(name, Arc::new(module));
        }
        Ok((modules, warnings))
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Module>> {
        self.by_name.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }
}

/// The built-in modules: as blackbox_exporter's of those names, but a
/// name's every address is tried in turn (`localhost:5432` answers on
/// 127.0.0.1 when nothing listens on ::1).
fn builtins() -> Vec<Module> {
    let ip = IpPreference {
        every_address: true,
        ..IpPreference::default()
    };
    let module = |name: &str, prober| Module {
        name: name.into(),
        timeout: None,
        prober,
    };
    vec![
        module(
            "tcp_connect",
            Prober::Tcp(TcpModule {
                ip,
                ..TcpModule::default()
            }),
        ),
        module(
            "tls_connect",
            Prober::Tcp(TcpModule {
                ip,
                tls: true,
                ..TcpModule::default()
            }),
        ),
        module(
            "http_2xx",
            Prober::Http(Box::new(HttpModule {
                ip,
                ..HttpModule::default()
            })),
        ),
        module(
            "udp",
            Prober::Udp(UdpModule {
                ip,
                ..UdpModule::default()
            }),
        ),
    ]
}

impl Default for HttpModule {
    fn default() -> Self {
        HttpModule {
            ip: IpPreference::default(),
            method: "GET".into(),
            headers: Vec::new(),
            body: None,
            valid_status_codes: Vec::new(),
            valid_http_versions: Vec::new(),
            follow_redirects: true,
            fail_if_ssl: false,
            fail_if_not_ssl: false,
            fail_if_body_matches: Vec::new(),
            fail_if_body_not_matches: Vec::new(),
            fail_if_header_matches: Vec::new(),
            fail_if_header_not_matches: Vec::new(),
            authorization: None,
            tls_config: TlsModule::default(),
        }
    }
}

// The file, as written. Unknown keys are refused inside the probers we run;
// the sections of the ones we do not are read past.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    modules: BTreeMap<String, RawModule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModule {
    prober: String,
    timeout: Option<String>,
    http: Option<RawHttp>,
    tcp: Option<RawTcp>,
    udp: Option<RawUdp>,
    // Read past: their probers are not ours.
    #[allow(dead_code)]
    icmp: Option<serde::de::IgnoredAny>,
    #[allow(dead_code)]
    dns: Option<serde::de::IgnoredAny>,
    #[allow(dead_code)]
    grpc: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTcp {
    preferred_ip_protocol: Option<String>,
    ip_protocol_fallback: Option<bool>,
    #[serde(default)]
    query_response: Vec<RawQueryResponse>,
    #[serde(default)]
    tls: bool,
    tls_config: Option<RawTls>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueryResponse {
    expect: Option<String>,
    send: Option<String>,
    #[serde(default)]
    starttls: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default)]
    valid_status_codes: Vec<u16>,
    #[serde(default)]
    valid_http_versions: Vec<String>,
    preferred_ip_protocol: Option<String>,
    ip_protocol_fallback: Option<bool>,
    no_follow_redirects: Option<bool>,
    follow_redirects: Option<bool>,
    #[serde(default)]
    fail_if_ssl: bool,
    #[serde(default)]
    fail_if_not_ssl: bool,
    method: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<String>,
    #[serde(default)]
    fail_if_body_matches_regexp: Vec<String>,
    #[serde(default)]
    fail_if_body_not_matches_regexp: Vec<String>,
    #[serde(default)]
    fail_if_header_matches: Vec<RawHeaderMatch>,
    #[serde(default)]
    fail_if_header_not_matches: Vec<RawHeaderMatch>,
    tls_config: Option<RawTls>,
    basic_auth: Option<RawBasicAuth>,
    bearer_token: Option<String>,
    bearer_token_file: Option<String>,
    /// Read and accepted: we speak HTTP/1.1 only, as Go's client does
    /// without TLS.
    #[allow(dead_code)]
    enable_http2: Option<bool>,
    /// Refused with a reason: checks never go through a proxy.
    proxy_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeaderMatch {
    header: String,
    regexp: String,
    #[serde(default)]
    allow_missing: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBasicAuth {
    username: String,
    password: Option<String>,
    password_file: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawUdp {
    preferred_ip_protocol: Option<String>,
    ip_protocol_fallback: Option<bool>,
    payload: Option<String>,
    payload_hex: Option<String>,
    expect: Option<String>,
    #[serde(default)]
    silence_is_success: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTls {
    #[serde(default)]
    insecure_skip_verify: bool,
    ca_file: Option<String>,
    server_name: Option<String>,
    cert_file: Option<String>,
    key_file: Option<String>,
    min_version: Option<String>,
    max_version: Option<String>,
}

fn compile(
    name: &str,
    raw: RawModule,
    dir: &Path,
    at: &dyn Fn(&str, String) -> String,
) -> Result<Module, String> {
    let timeout = match raw.timeout.as_deref() {
        None => None,
        Some(t) => Some(crate::config::parse_interval(t).map_err(|why| at("timeout", why))?),
    };
    let prober = match raw.prober.as_str() {
        "tcp" => Prober::Tcp(tcp(raw.tcp.unwrap_or_default(), dir, at)?),
        "http" => Prober::Http(Box::new(http(raw.http.unwrap_or_default(), dir, at)?)),
        "udp" => Prober::Udp(udp(raw.udp.unwrap_or_default(), at)?),
        "icmp" | "dns" | "grpc" => Prober::Unsupported(raw.prober),
        other => {
            return Err(at(
                "prober",
                format!(
                    "unknown prober '{other}' (expected tcp, http, udp; icmp, dns and grpc load but are not run)"
                ),
            ));
        }
    };
    Ok(Module {
        name: name.into(),
        timeout,
        prober,
    })
}

fn ip(
    preferred: Option<String>,
    fallback: Option<bool>,
    section: &str,
    at: &dyn Fn(&str, String) -> String,
) -> Result<IpPreference, String> {
    let v6_first = match preferred.as_deref() {
        None | Some("") | Some("ip6") => true,
        Some("ip4") => false,
        Some(other) => {
            return Err(at(
                &format!("{section}.preferred_ip_protocol"),
                format!("'{other}' (expected ip4 or ip6)"),
            ));
        }
    };
    Ok(IpPreference {
        v6_first,
        fallback: fallback.unwrap_or(true),
        every_address: false,
    })
}

fn regex(pattern: &str, key: &str, at: &dyn Fn(&str, String) -> String) -> Result<Regex, String> {
    Regex::new(pattern).map_err(|e| at(key, crate::error::one_line(&e.to_string())))
}

fn tcp(raw: RawTcp, dir: &Path, at: &dyn Fn(&str, String) -> String) -> Result<TcpModule, String> {
    let mut query_response = Vec::with_capacity(raw.query_response.len());
    for (i, qr) in raw.query_response.into_iter().enumerate() {
        let expect = match qr.expect.as_deref() {
            None | Some("") => None,
            Some(p) => Some(regex(p, &format!("tcp.query_response[{i}].expect"), at)?),
        };
        query_response.push(QueryResponse {
            expect,
            send: qr.send.filter(|s| !s.is_empty()),
            starttls: qr.starttls,
        });
    }
    Ok(TcpModule {
        ip: ip(
            raw.preferred_ip_protocol,
            raw.ip_protocol_fallback,
            "tcp",
            at,
        )?,
        tls: raw.tls,
        tls_config: tls(
            raw.tls_config.unwrap_or_default(),
            "tcp.tls_config",
            dir,
            at,
        )?,
        query_response,
    })
}

fn http(
    raw: RawHttp,
    dir: &Path,
    at: &dyn Fn(&str, String) -> String,
) -> Result<HttpModule, String> {
    if raw.proxy_url.is_some() {
        return Err(at(
            "http.proxy_url",
            "portwarden's checks never go through a proxy".into(),
        ));
    }
    let method = raw
        .method
        .unwrap_or_else(|| "GET".into())
        .to_ascii_uppercase();
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(at("http.method", format!("'{method}' is no HTTP method")));
    }
    for code in &raw.valid_status_codes {
        if !(100..=599).contains(code) {
            return Err(at(
                "http.valid_status_codes",
                format!("{code} is no HTTP status (100 to 599)"),
            ));
        }
    }
    let mut headers = Vec::with_capacity(raw.headers.len());
    for (k, v) in raw.headers {
        let token = !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token || v.contains(['\r', '\n']) {
            return Err(at(
                &format!("http.headers.{k}"),
                "not a valid header name and value".into(),
            ));
        }
        headers.push((k, v));
    }
    let authorization = match (raw.basic_auth, raw.bearer_token, raw.bearer_token_file) {
        (Some(_), Some(_) | None, Some(_))
        | (Some(_), Some(_), None)
        | (None, Some(_), Some(_)) => {
            return Err(at(
                "http",
                "basic_auth, bearer_token and bearer_token_file exclude each other".into(),
            ));
        }
        (Some(b), None, None) => {
            let password = match (b.password, b.password_file) {
                (Some(p), None) => p,
                (None, Some(f)) => {
                    read_secret(&resolve(dir, &f), "http.basic_auth.password_file", at)?
                }
                (None, None) => String::new(),
                (Some(_), Some(_)) => {
                    return Err(at(
                        "http.basic_auth",
                        "password and password_file exclude each other".into(),
                    ));
                }
            };
            use base64::Engine;
            let token = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{password}", b.username));
            Some(format!("Basic {token}"))
        }
        (None, Some(t), None) => Some(format!("Bearer {t}")),
        (None, None, Some(f)) => Some(format!(
            "Bearer {}",
            read_secret(&resolve(dir, &f), "http.bearer_token_file", at)?
        )),
        (None, None, None) => None,
    };
    let regexes = |list: Vec<String>, key: &str| -> Result<Vec<Regex>, String> {
        list.iter()
            .enumerate()
            .map(|(i, p)| regex(p, &format!("http.{key}[{i}]"), at))
            .collect()
    };
    let header_matches =
        |list: Vec<RawHeaderMatch>, key: &str| -> Result<Vec<HeaderMatch>, String> {
            list.into_iter()
                .enumerate()
                .map(|(i, m)| {
                    Ok(HeaderMatch {
                        regexp: regex(&m.regexp, &format!("http.{key}[{i}].regexp"), at)?,
                        header: m.header,
                        allow_missing: m.allow_missing,
                    })
                })
                .collect()
        };
    Ok(HttpModule {
        ip: ip(
            raw.preferred_ip_protocol,
            raw.ip_protocol_fallback,
            "http",
            at,
        )?,
        method,
        headers,
        body: raw.body,
        valid_status_codes: raw.valid_status_codes,
        valid_http_versions: raw.valid_http_versions,
        // The newer key wins over the deprecated one, as in blackbox.
        follow_redirects: raw
            .follow_redirects
            .or(raw.no_follow_redirects.map(|no| !no))
            .unwrap_or(true),
        fail_if_ssl: raw.fail_if_ssl,
        fail_if_not_ssl: raw.fail_if_not_ssl,
        fail_if_body_matches: regexes(
            raw.fail_if_body_matches_regexp,
            "fail_if_body_matches_regexp",
        )?,
        fail_if_body_not_matches: regexes(
            raw.fail_if_body_not_matches_regexp,
            "fail_if_body_not_matches_regexp",
        )?,
        fail_if_header_matches: header_matches(
            raw.fail_if_header_matches,
            "fail_if_header_matches",
        )?,
        fail_if_header_not_matches: header_matches(
            raw.fail_if_header_not_matches,
            "fail_if_header_not_matches",
        )?,
        authorization,
        tls_config: tls(
            raw.tls_config.unwrap_or_default(),
            "http.tls_config",
            dir,
            at,
        )?,
    })
}

fn udp(raw: RawUdp, at: &dyn Fn(&str, String) -> String) -> Result<UdpModule, String> {
    let payload = match (raw.payload, raw.payload_hex) {
        (Some(_), Some(_)) => {
            return Err(at(
                "udp",
                "payload and payload_hex exclude each other".into(),
            ));
        }
        (Some(text), None) => text.into_bytes(),
        (None, Some(hex)) => decode_hex(&hex).ok_or_else(|| {
            at(
                "udp.payload_hex",
                "expected an even number of hex digits (spaces allowed)".into(),
            )
        })?,
        (None, None) => Vec::new(),
    };
    if payload.len() > 65_507 {
        return Err(at(
            "udp.payload",
            "longer than one datagram (65507 bytes)".into(),
        ));
    }
    Ok(UdpModule {
        ip: ip(
            raw.preferred_ip_protocol,
            raw.ip_protocol_fallback,
            "udp",
            at,
        )?,
        payload,
        expect: match raw.expect.as_deref() {
            None | Some("") => None,
            Some(p) => Some(regex(p, "udp.expect", at)?),
        },
        silence_is_success: raw.silence_is_success,
    })
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

fn tls(
    raw: RawTls,
    section: &str,
    dir: &Path,
    at: &dyn Fn(&str, String) -> String,
) -> Result<TlsModule, String> {
    let version = |v: Option<&str>, key: &str, default: u8| match v {
        None | Some("") => Ok(default),
        Some("TLS12") => Ok(12),
        Some("TLS13") => Ok(13),
        Some(other) => Err(at(
            &format!("{section}.{key}"),
            format!("'{other}' (expected TLS12 or TLS13; older versions are not spoken)"),
        )),
    };
    let min_version = version(raw.min_version.as_deref(), "min_version", 12)?;
    let max_version = version(raw.max_version.as_deref(), "max_version", 13)?;
    if min_version > max_version {
        return Err(at(section, "min_version is above max_version".into()));
    }
    let roots = match raw.ca_file.as_deref() {
        None | Some("") => None,
        Some(f) => {
            let key = format!("{section}.ca_file");
            let path = resolve(dir, f);
            let mut roots = RootCertStore::empty();
            for cert in read_certs(&path, &key, at)? {
                roots.add(cert).map_err(|e| {
                    at(
                        &key,
                        format!("unusable CA certificate in {}: {e}", path.display()),
                    )
                })?;
            }
            Some(Arc::new(roots))
        }
    };
    let client_cert = match (raw.cert_file.as_deref(), raw.key_file.as_deref()) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            let chain = read_certs(&resolve(dir, cert), &format!("{section}.cert_file"), at)?;
            let key_path = resolve(dir, key);
            let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| {
                at(
                    &format!("{section}.key_file"),
                    format!("no usable PEM private key in {}: {e}", key_path.display()),
                )
            })?;
            Some(Arc::new(ClientCert { chain, key }))
        }
        _ => {
            return Err(at(section, "cert_file and key_file go together".into()));
        }
    };
    Ok(TlsModule {
        insecure_skip_verify: raw.insecure_skip_verify,
        roots,
        server_name: raw.server_name.filter(|s| !s.is_empty()),
        client_cert,
        min_version,
        max_version,
    })
}

fn resolve(dir: &Path, file: &str) -> PathBuf {
    let path = Path::new(file);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        dir.join(path)
    }
}

fn read_secret(
    path: &Path,
    key: &str,
    at: &dyn Fn(&str, String) -> String,
) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
        .map_err(|e| at(key, format!("cannot read {}: {e}", path.display())))
}

fn read_certs(
    path: &Path,
    key: &str,
    at: &dyn Fn(&str, String) -> String,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes =
        std::fs::read(path).map_err(|e| at(key, format!("cannot read {}: {e}", path.display())))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| at(key, format!("bad PEM in {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(at(key, format!("no PEM certificate in {}", path.display())));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(Modules, Vec<String>), String> {
        Modules::parse(text, "b.yml", Path::new("."))
    }

    #[test]
    fn debians_blackbox_yml_loads_as_it_is() {
        // /etc/prometheus/blackbox.yml of Debian's prometheus-blackbox-exporter.
        let text = r#"modules:
  http_2xx:
    prober: http
  http_post_2xx:
    prober: http
    http:
      method: POST
  tcp_connect:
    prober: tcp
  pop3s_banner:
    prober: tcp
    tcp:
      query_response:
      - expect: "^+OK"
      tls: true
      tls_config:
        insecure_skip_verify: false
  grpc:
    prober: grpc
    grpc:
      tls: true
      preferred_ip_protocol: "ip4"
  ssh_banner:
    prober: tcp
    tcp:
      query_response:
      - expect: "^SSH-2.0-"
      - send: "SSH-2.0-blackbox-ssh-check"
  irc_banner:
    prober: tcp
    tcp:
      query_response:
      - send: "NICK prober"
      - expect: "PING :([^ ]+)"
        send: "PONG ${1}"
  icmp_ttl5:
    prober: icmp
    timeout: 5s
    icmp:
      ttl: 5
"#;
        let (modules, warnings) = parse(text).expect("loads");
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].contains("'grpc' uses the grpc prober"),
            "{warnings:?}"
        );
        let Prober::Http(post) = &modules.get("http_post_2xx").expect("post").prober else {
            panic!("http")
        };
        assert_eq!(post.method, "POST");
        assert!(post.follow_redirects);
        let Prober::Tcp(pop3s) = &modules.get("pop3s_banner").expect("pop3s").prober else {
            panic!("tcp")
        };
        assert!(pop3s.tls && !pop3s.tls_config.insecure_skip_verify);
        let icmp = modules.get("icmp_ttl5").expect("icmp");
        assert_eq!(icmp.timeout, Some(Duration::from_secs(5)));
        assert_eq!(icmp.prober.name(), "icmp");
        // The built-ins stay beside the file's.
        assert!(modules.get("udp").is_some() && modules.get("tls_connect").is_some());
    }

    #[test]
    fn a_bad_module_names_file_module_and_key() {
        for (text, want) in [
            (
                "modules:\n  m:\n    prober: http\n    http:\n      valid_status_code: [200]\n",
                "valid_status_code",
            ),
            (
                "modules:\n  m:\n    prober: tcp\n    tcp:\n      query_response:\n      - expect: '('\n",
                "b.yml: modules.m.tcp.query_response[0].expect: ",
            ),
            (
                "modules:\n  m:\n    prober: http\n    http:\n      proxy_url: http://p:3128\n",
                "b.yml: modules.m.http.proxy_url: portwarden's checks never go through a proxy",
            ),
            (
                "modules:\n  m:\n    prober: smtp\n",
                "b.yml: modules.m.prober: unknown prober 'smtp'",
            ),
            (
                "modules:\n  m:\n    prober: http\n    timeout: soon\n",
                "b.yml: modules.m.timeout: invalid duration 'soon'",
            ),
            (
                "modules:\n  m:\n    prober: tcp\n    tcp:\n      tls_config: {ca_file: /nonexistent.pem}\n",
                "b.yml: modules.m.tcp.tls_config.ca_file: cannot read /nonexistent.pem",
            ),
            (
                "modules:\n  m:\n    prober: udp\n    udp: {payload_hex: 'abc'}\n",
                "b.yml: modules.m.udp.payload_hex: expected an even number",
            ),
        ] {
            let err = parse(text).expect_err(text);
            assert!(err.contains(want), "{text}\n→ {err}");
            assert!(err.starts_with("b.yml: "), "{err}");
        }
    }

    #[test]
    fn http_keys_are_read() {
        let text = "modules:\n  m:\n    prober: http\n    http:\n      valid_status_codes: [200, 302]\n      no_follow_redirects: true\n      headers: {X-A: b}\n      fail_if_body_not_matches_regexp: ['ok']\n      fail_if_header_matches: [{header: Server, regexp: 'bad'}]\n      basic_auth: {username: u, password: p}\n      tls_config: {insecure_skip_verify: true, server_name: api, min_version: TLS13}\n  u:\n    prober: udp\n    udp: {payload_hex: '00 01', silence_is_success: true, expect: '^x'}\n";
        let (modules, _) = parse(text).expect("loads");
        let Prober::Http(m) = &modules.get("m").expect("m").prober else {
            panic!("http")
        };
        assert_eq!(m.valid_status_codes, [200, 302]);
        assert!(!m.follow_redirects);
        assert_eq!(m.headers, [("X-A".to_string(), "b".to_string())]);
        assert_eq!(m.authorization.as_deref(), Some("Basic dTpw"));
        assert_eq!(m.fail_if_header_matches[0].header, "Server");
        assert!(m.tls_config.insecure_skip_verify);
        assert_eq!(m.tls_config.server_name.as_deref(), Some("api"));
        assert_eq!(
            (m.tls_config.min_version, m.tls_config.max_version),
            (13, 13)
        );
        let Prober::Udp(u) = &modules.get("u").expect("u").prober else {
            panic!("udp")
        };
        assert_eq!(u.payload, [0, 1]);
        assert!(u.silence_is_success && u.expect.is_some());
    }
}
