//! A module file as written (blackbox_exporter's keys; unknown ones refused
//! inside the probers we run, the sections of the others read past), and
//! its compilation: regular expressions, certificates and secrets loaded.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use regex::bytes::Regex;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use serde::Deserialize;

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileDoc {
    #[serde(default)]
    pub(super) modules: BTreeMap<String, serde_saphyr::Spanned<RawModule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModule {
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

pub(super) fn compile(
    name: &str,
    raw: RawModule,
    dir: &Path,
    at: &dyn Fn(&str, String) -> String,
) -> Result<Module, String> {
    let timeout = match raw.timeout.as_deref() {
        None => None,
        Some(t) => Some(crate::value::parse_interval(t).map_err(|why| at("timeout", why))?),
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
        headers.push((k, Secret(v)));
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
                (None, Some(f)) => read_secret(&dir.join(&f), "http.basic_auth.password_file", at)?,
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
            Some(Secret(format!("Basic {token}")))
        }
        (None, Some(t), None) => Some(Secret(format!("Bearer {t}"))),
        (None, None, Some(f)) => Some(Secret(format!(
            "Bearer {}",
            read_secret(&dir.join(&f), "http.bearer_token_file", at)?
        ))),
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
    let ca = match raw.ca_file.as_deref() {
        None | Some("") => None,
        Some(f) => {
            let key = format!("{section}.ca_file");
            let path = dir.join(f);
            let mut roots = RootCertStore::empty();
            for cert in read_certs(&path, &key, at)? {
                roots.add(cert).map_err(|e| {
                    at(
                        &key,
                        format!("unusable CA certificate in {}: {e}", path.display()),
                    )
                })?;
            }
            Some(TrustedCa {
                file: path,
                roots: Arc::new(roots),
            })
        }
    };
    let client_cert = match (raw.cert_file.as_deref(), raw.key_file.as_deref()) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            let cert_path = dir.join(cert);
            let chain = read_certs(&cert_path, &format!("{section}.cert_file"), at)?;
            let key_path = dir.join(key);
            let key = crate::pem::private_key(&key_path)
                .map_err(|why| at(&format!("{section}.key_file"), why))?;
            Some(Arc::new(ClientCert {
                files: (cert_path, key_path),
                chain,
                key,
            }))
        }
        _ => {
            return Err(at(section, "cert_file and key_file go together".into()));
        }
    };
    Ok(TlsModule {
        insecure_skip_verify: raw.insecure_skip_verify,
        ca,
        server_name: raw.server_name.filter(|s| !s.is_empty()),
        client_cert,
        min_version,
        max_version,
    })
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
    crate::pem::certificates(path).map_err(|why| at(key, why))
}
