//! `--web.config.file`: TLS, client certificates, extra headers and basic
//! auth, in the format of Prometheus's exporter-toolkit (the file
//! node_exporter and blackbox_exporter read), so one file serves all three.
//!
//! The file is parsed strictly: an unknown key is an error naming it, as the
//! toolkit's `yaml.UnmarshalStrict` does. Relative paths are relative to the
//! file's directory. The toolkit's keys and their rules:
//! <https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md>
//!
//! What differs, because rustls is not Go's crypto/tls: TLS 1.0 and 1.1 do
//! not exist (a `min_version` below TLS12 means TLS12; a `max_version` below
//! it is an error), only the ECDHE AEAD suites exist for TLS 1.2 (others named
//! in `cipher_suites` are left out with a warning), `CurveP521` is not offered
//! and `http2` is accepted but HTTP/1.1 is what is served.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use axum::http::{HeaderName, HeaderValue};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoClientAuth, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use serde::Deserialize;

use super::auth::Users;

mod reload;

pub use reload::{Web, hold_hangups, release_hangups, watch};

/// A problem with the web config: the key it is about (dotted, as in the
/// file) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct WebConfigError {
    pub key: String,
    pub message: String,
}

fn problem(key: &str, message: impl Into<String>) -> WebConfigError {
    WebConfigError {
        key: key.to_string(),
        message: message.into(),
    }
}

/// The file as written. Every struct refuses unknown keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct File {
    pub tls_server_config: Option<TlsFile>,
    pub http_server_config: Option<HttpFile>,
    pub basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsFile {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub client_auth_type: Option<String>,
    pub client_ca_file: Option<String>,
    pub cipher_suites: Option<Vec<String>>,
    pub curve_preferences: Option<Vec<String>>,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    pub prefer_server_cipher_suites: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpFile {
    pub http2: Option<bool>,
    pub headers: Option<BTreeMap<String, String>>,
}

/// Headers the toolkit lets a file add, and the values it allows (`None`:
/// any). Kept to the toolkit's list so one file means the same everywhere.
const EXTRA_HEADERS: &[(&str, Option<&[&str]>)] = &[
    ("Strict-Transport-Security", None),
    ("X-Content-Type-Options", Some(&["nosniff"])),
    ("X-Frame-Options", Some(&["deny", "sameorigin"])),
    ("X-XSS-Protection", None),
    ("Content-Security-Policy", None),
];

/// The five `client_auth_type` values (and the toolkit's old alias).
const CLIENT_AUTH_TYPES: &str = "NoClientCert, RequestClientCert, RequireAnyClientCert, \
                                 VerifyClientCertIfGiven or RequireAndVerifyClientCert";

/// A validated web config, ready to serve with. The default (no file):
/// plain HTTP, no auth, no extra headers.
#[derive(Default)]
pub struct WebConfig {
    /// `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `None`: no basic auth.
    pub users: Option<Arc<Users>>,
    /// The files this config was built from (the config itself, cert, key,
    /// CA): a change to any of them means a reload.
    pub sources: Vec<PathBuf>,
}

impl WebConfig {
    /// Reads and validates the file at `path`, and the files it names.
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let text = fs::read_to_string(path)
            .map_err(|e| problem("file", format!("cannot read {}: {e}", path.display())))?;
        let file = parse(&text)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut config = build(file, dir)?;
        config.sources.insert(0, path.to_path_buf());
        Ok(config)
    }
}

/// Parses the text of a web config; an empty file (or only comments) is the
/// empty config, as for the toolkit.
pub fn parse(text: &str) -> Result<File, WebConfigError> {
    let blank = text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#') || l.trim() == "---");
    if blank {
        return Ok(File::default());
    }
    crate::error::read_yaml::<Option<File>>(text)
        .map(Option::unwrap_or_default)
        .map_err(|e| problem("YAML", e))
}

/// Validates a parsed file: reads the certificate, key and CA it names
/// (relative to `dir`) and checks every value.
pub fn build(file: File, dir: &Path) -> Result<WebConfig, WebConfigError> {
    let mut sources = Vec::new();
    let headers = headers(file.http_server_config.and_then(|h| h.headers))?;
    let users = match file.basic_auth_users {
        Some(users) if !users.is_empty() => Some(Arc::new(Users::new(users)?)),
        _ => None,
    };
    let tls = match file.tls_server_config {
        Some(tls) if tls_enabled(&tls) => Some(Arc::new(tls_config(tls, dir, &mut sources)?)),
        _ => None,
    };
    Ok(WebConfig {
        tls,
        headers,
        users,
        sources,
    })
}

/// Whether the TLS section turns TLS on: as the toolkit, any of the
/// certificate, key, CA or client auth type being set.
fn tls_enabled(tls: &TlsFile) -> bool {
    [
        &tls.cert_file,
        &tls.key_file,
        &tls.client_ca_file,
        &tls.client_auth_type,
    ]
    .iter()
    .any(|v| v.as_deref().is_some_and(|s| !s.is_empty()))
}

fn headers(
    configured: Option<BTreeMap<String, String>>,
) -> Result<Vec<(HeaderName, HeaderValue)>, WebConfigError> {
    let mut out = Vec::new();
    for (name, value) in configured.unwrap_or_default() {
        let key = format!("http_server_config.headers.{name}");
        let Some((_, allowed)) = EXTRA_HEADERS.iter().find(|(n, _)| *n == name) else {
            let names: Vec<&str> = EXTRA_HEADERS.iter().map(|(n, _)| *n).collect();
            return Err(problem(
                &key,
                format!("this header cannot be configured (expected one of {names:?})"),
            ));
        };
        if let Some(allowed) = allowed
            && !allowed.contains(&value.as_str())
        {
            return Err(problem(
                &key,
                format!("invalid value '{value}' (expected one of {allowed:?})"),
            ));
        }
        let header_value = HeaderValue::from_str(&value)
            .map_err(|_| problem(&key, format!("invalid header value '{value}'")))?;
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| problem(&key, "invalid header name"))?;
        out.push((header_name, header_value));
    }
    Ok(out)
}

/// `path` as written in the file, relative to the file's directory.
/// A file a config names, relative to the config's directory (an absolute
/// path stays as it is: `Path::join` keeps it).
fn resolve(dir: &Path, path: &str) -> PathBuf {
    dir.join(path)
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|s| !s.is_empty())
}

fn tls_config(
    tls: TlsFile,
    dir: &Path,
    sources: &mut Vec<PathBuf>,
) -> Result<rustls::ServerConfig, WebConfigError> {
    const T: &str = "tls_server_config";
    let cert_file = non_empty(&tls.cert_file).ok_or_else(|| {
        problem(
            &format!("{T}.cert_file"),
            "missing (TLS needs a certificate)",
        )
    })?;
    let key_file = non_empty(&tls.key_file).ok_or_else(|| {
        problem(
            &format!("{T}.key_file"),
            "missing (TLS needs a private key)",
        )
    })?;
    let cert_path = resolve(dir, cert_file);
    let key_path = resolve(dir, key_file);
    let certs = read_certs(&cert_path, &format!("{T}.cert_file"))?;
    let key =
        crate::pem::private_key(&key_path).map_err(|why| problem(&format!("{T}.key_file"), why))?;
    sources.push(cert_path);
    sources.push(key_path);

    let (min, max) = versions(&tls)?;
    let provider = Arc::new(provider(&tls, min)?);
    let roots = match non_empty(&tls.client_ca_file) {
        Some(ca) => {
            let ca_path = resolve(dir, ca);
            let mut roots = RootCertStore::empty();
            for cert in read_certs(&ca_path, &format!("{T}.client_ca_file"))? {
                roots.add(cert).map_err(|e| {
                    problem(
                        &format!("{T}.client_ca_file"),
                        format!("unusable CA certificate in {}: {e}", ca_path.display()),
                    )
                })?;
            }
            sources.push(ca_path);
            Some(Arc::new(roots))
        }
        None => None,
    };
    let verifier = client_verifier(
        tls.client_auth_type.as_deref().unwrap_or(""),
        roots,
        &provider,
    )?;
    let protocols: Vec<&'static rustls::SupportedProtocolVersion> = [
        (Version::Tls12, &rustls::version::TLS12),
        (Version::Tls13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| (min..=max).contains(v))
    .map(|(_, p)| p)
    .collect();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&protocols)
        .map_err(|e| problem(&format!("{T}.cipher_suites"), e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| {
            problem(
                &format!("{T}.key_file"),
                format!("the key does not fit the certificate: {e}"),
            )
        })?;
    config.ignore_client_order = tls.prefer_server_cipher_suites.unwrap_or(true);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn read_certs(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, WebConfigError> {
    crate::pem::certificates(path).map_err(|why| problem(key, why))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Version {
    Tls10,
    Tls11,
    Tls12,
    Tls13,
}

fn version(value: &str, key: &str) -> Result<Version, WebConfigError> {
    match value {
        "TLS10" => Ok(Version::Tls10),
        "TLS11" => Ok(Version::Tls11),
        "TLS12" => Ok(Version::Tls12),
        "TLS13" => Ok(Version::Tls13),
        _ => Err(problem(
            key,
            format!("unknown TLS version '{value}' (expected TLS10, TLS11, TLS12 or TLS13)"),
        )),
    }
}

/// The versions allowed, TLS 1.2 at least (rustls has no older ones).
fn versions(tls: &TlsFile) -> Result<(Version, Version), WebConfigError> {
    const MIN: &str = "tls_server_config.min_version";
    const MAX: &str = "tls_server_config.max_version";
    let min = match non_empty(&tls.min_version) {
        Some(v) => version(v, MIN)?,
        None => Version::Tls12,
    };
    let max = match non_empty(&tls.max_version) {
        Some(v) => version(v, MAX)?,
        None => Version::Tls13,
    };
    if max < Version::Tls12 {
        return Err(problem(
            MAX,
            "TLS 1.0 and 1.1 are not supported (expected TLS12 or TLS13)",
        ));
    }
    if min > max {
        return Err(problem(MIN, "is above max_version"));
    }
    if min < Version::Tls12 {
        tracing::warn!("{MIN}: TLS 1.0 and 1.1 are not supported; TLS 1.2 is the minimum");
    }
    Ok((min.max(Version::Tls12), max))
}

/// Go's names of the TLS 1.2 suites rustls implements.
fn go_name(suite: rustls::CipherSuite) -> Option<&'static str> {
    use rustls::CipherSuite as C;
    Some(match suite {
        C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => {
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
        }
        C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => {
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"
        }
        _ => return None,
    })
}

/// Suites Go knows and rustls does not: named in a file, they are left out
/// with a warning rather than refused, so a node_exporter file still loads.
const GO_ONLY_SUITES: &[&str] = &[
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    // TLS 1.3 suites: Go ignores them in this list, as do we.
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// ring's provider narrowed to the configured TLS 1.2 suites and curves.
fn provider(tls: &TlsFile, min: Version) -> Result<CryptoProvider, WebConfigError> {
    const SUITES: &str = "tls_server_config.cipher_suites";
    const CURVES: &str = "tls_server_config.curve_preferences";
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(names) = tls.cipher_suites.as_ref().filter(|n| !n.is_empty()) {
        let mut chosen = Vec::new();
        for name in names {
            // Go accepts the CHACHA20 names with and without `_SHA256`.
            let full = if name.ends_with("CHACHA20_POLY1305") {
                format!("{name}_SHA256")
            } else {
                name.clone()
            };
            let found = provider.cipher_suites.iter().find(|s| {
                s.version() == &rustls::version::TLS12 && go_name(s.suite()) == Some(full.as_str())
            });
            match found {
                Some(suite) => chosen.push(*suite),
                None if GO_ONLY_SUITES.contains(&name.as_str()) => {
                    tracing::warn!("{SUITES}: {name} is not supported; left out");
                }
                None => return Err(problem(SUITES, format!("unknown cipher '{name}'"))),
            }
        }
        if chosen.is_empty() && min <= Version::Tls12 {
            return Err(problem(
                SUITES,
                "none of the listed suites is supported (TLS 1.2 offers the ECDHE AES-GCM and CHACHA20-POLY1305 suites)",
            ));
        }
        provider
            .cipher_suites
            .retain(|s| s.version() == &rustls::version::TLS13 || chosen.contains(s));
        // Go keeps the list's order for TLS 1.2 when the server's order is preferred.
        provider
            .cipher_suites
            .sort_by_key(|s| chosen.iter().position(|c| c == s).unwrap_or(usize::MAX));
    }
    if let Some(names) = tls.curve_preferences.as_ref().filter(|n| !n.is_empty()) {
        use rustls::crypto::ring::kx_group;
        let mut groups = Vec::new();
        for name in names {
            match name.as_str() {
                "X25519" => groups.push(kx_group::X25519),
                "CurveP256" => groups.push(kx_group::SECP256R1),
                "CurveP384" => groups.push(kx_group::SECP384R1),
                "CurveP521" => tracing::warn!("{CURVES}: CurveP521 is not supported; left out"),
                _ => {
                    return Err(problem(
                        CURVES,
                        format!(
                            "unknown curve '{name}' (expected X25519, CurveP256, CurveP384 or CurveP521)"
                        ),
                    ));
                }
            }
        }
        if groups.is_empty() {
            return Err(problem(CURVES, "none of the listed curves is supported"));
        }
        provider.kx_groups = groups;
    }
    Ok(provider)
}

fn client_verifier(
    kind: &str,
    roots: Option<Arc<RootCertStore>>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, WebConfigError> {
    const KEY: &str = "tls_server_config.client_auth_type";
    let verified = |roots: Option<Arc<RootCertStore>>, optional: bool| {
        let roots = roots.ok_or_else(|| {
            problem(
                KEY,
                format!("{kind} verifies client certificates: client_ca_file is needed"),
            )
        })?;
        let builder = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
        let builder = if optional {
            builder.allow_unauthenticated()
        } else {
            builder
        };
        builder
            .build()
            .map_err(|e| problem("tls_server_config.client_ca_file", e.to_string()))
    };
    let any = |mandatory: bool| -> Arc<dyn ClientCertVerifier> {
        Arc::new(AnyClientCert {
            mandatory,
            algorithms: provider.signature_verification_algorithms,
        })
    };
    let verifier = match kind {
        "" | "NoClientCert" => {
            if roots.is_some() {
                return Err(problem(
                    KEY,
                    "client_ca_file is set but no client certificate is asked for (set client_auth_type)",
                ));
            }
            Arc::new(NoClientAuth)
        }
        "RequestClientCert" => any(false),
        "RequireAnyClientCert" | "RequireClientCert" => any(true),
        "VerifyClientCertIfGiven" => verified(roots, true)?,
        "RequireAndVerifyClientCert" => verified(roots, false)?,
        _ => {
            return Err(problem(
                KEY,
                format!("invalid value '{kind}' (expected {CLIENT_AUTH_TYPES})"),
            ));
        }
    };
    Ok(verifier)
}

/// Go's `RequestClientCert` and `RequireAnyClientCert`: a certificate is
/// asked for (and required, for the latter) but not checked against any CA.
/// The client must still prove it holds the certificate's key.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> WebConfigError {
        match parse(text).and_then(|f| build(f, Path::new("/nonexistent"))) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e,
        }
    }

    #[test]
    fn empty_and_comment_only_files_are_plain_http() {
        for text in ["", "\n", "# nothing\n", "---\n"] {
            let c = build(parse(text).expect("parses"), Path::new(".")).expect("valid");
            assert!(c.tls.is_none() && c.users.is_none() && c.headers.is_empty());
        }
    }

    #[test]
    fn unknown_keys_are_named() {
        for (text, key) in [
            ("tls_server_config:\n  cert_fil: x\n", "cert_fil"),
            ("basic_auth_user:\n  a: b\n", "basic_auth_user"),
            ("http_server_config:\n  http3: true\n", "http3"),
            ("rate_limit:\n  burst: 1\n", "rate_limit"),
        ] {
            let e = err(text);
            assert!(e.to_string().contains(key), "{e} does not name {key}");
        }
    }

    #[test]
    fn tls_needs_both_files() {
        assert_eq!(
            err("tls_server_config:\n  key_file: k.pem\n").key,
            "tls_server_config.cert_file"
        );
        assert_eq!(
            err("tls_server_config:\n  cert_file: c.pem\n").key,
            "tls_server_config.key_file"
        );
    }

    #[test]
    fn tls_settings_without_files_mean_plain_http() {
        let c = build(
            parse("tls_server_config:\n  min_version: TLS13\n").expect("parses"),
            Path::new("."),
        )
        .expect("valid");
        assert!(c.tls.is_none());
    }

    #[test]
    fn headers_follow_the_toolkit_list() {
        let c = build(
            parse("http_server_config:\n  headers:\n    X-Frame-Options: deny\n    Strict-Transport-Security: max-age=31536000\n")
                .expect("parses"),
            Path::new("."),
        )
        .expect("valid");
        assert_eq!(c.headers.len(), 2);
        assert!(
            err("http_server_config:\n  headers:\n    Server: x\n")
                .key
                .ends_with("headers.Server")
        );
        assert!(
            err("http_server_config:\n  headers:\n    X-Frame-Options: allow\n")
                .message
                .contains("deny")
        );
    }

    #[test]
    fn bad_versions_and_hashes_are_refused() {
        assert!(version("TLS14", "k").is_err());
        let tls = TlsFile {
            max_version: Some("TLS11".into()),
            ..TlsFile::default()
        };
        assert!(versions(&tls).is_err());
        let tls = TlsFile {
            min_version: Some("TLS13".into()),
            max_version: Some("TLS12".into()),
            ..TlsFile::default()
        };
        assert!(versions(&tls).is_err());
        assert_eq!(
            err("basic_auth_users:\n  alice: notahash\n").key,
            "basic_auth_users.alice"
        );
    }

    #[test]
    fn suites_and_curves_map_go_names() {
        let tls = TlsFile {
            cipher_suites: Some(vec![
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384".into(),
                "TLS_RSA_WITH_AES_128_CBC_SHA".into(),
                "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305".into(),
            ]),
            curve_preferences: Some(vec!["CurveP384".into(), "CurveP521".into()]),
            ..TlsFile::default()
        };
        let p = provider(&tls, Version::Tls12).expect("valid");
        let tls12: Vec<_> = p
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS12)
            .map(|s| go_name(s.suite()))
            .collect();
        assert_eq!(
            tls12,
            [
                Some("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"),
                Some("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256")
            ]
        );
        assert_eq!(p.kx_groups.len(), 1);
        let bad = TlsFile {
            cipher_suites: Some(vec!["TLS_MADE_UP".into()]),
            ..TlsFile::default()
        };
        assert!(provider(&bad, Version::Tls12).is_err());
    }

    #[test]
    fn client_auth_types() {
        let p = Arc::new(rustls::crypto::ring::default_provider());
        for kind in [
            "",
            "NoClientCert",
            "RequestClientCert",
            "RequireAnyClientCert",
        ] {
            assert!(client_verifier(kind, None, &p).is_ok(), "{kind}");
        }
        for kind in ["VerifyClientCertIfGiven", "RequireAndVerifyClientCert"] {
            let e = client_verifier(kind, None, &p).expect_err("needs a CA");
            assert!(e.message.contains("client_ca_file"));
        }
        let e = client_verifier("Sometimes", None, &p).expect_err("refused");
        assert!(e.message.contains("RequireAndVerifyClientCert"));
    }
}
