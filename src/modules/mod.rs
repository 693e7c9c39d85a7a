//! Modules: how a target is checked, in blackbox_exporter's own file format
//! (`--modules.file`; a `blackbox.yml` works as it is). Probers `tcp` (with
//! `tls` and `query_response`), `http` and `udp` (ours) are ours to run;
//! `icmp`, `dns` and `grpc` modules load with one warning and are refused
//! when asked for. An unknown key inside a module we run is an error naming
//! the file, the module and the key: a check must never silently do less
//! than its file says. Everything is compiled here, at load (regular
//! expressions, certificate files), so a check never fails on its module.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use regex::bytes::Regex;
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
mod file;

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
    /// Names and values; the values hidden from `debug=true`.
    pub headers: Vec<(String, Secret)>,
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
    pub authorization: Option<Secret>,
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
    pub ca: Option<TrustedCa>,
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
            ca: None,
            server_name: None,
            client_cert: None,
            min_version: 12,
            max_version: 13,
        }
    }
}

/// A module's `ca_file`, loaded: shown by its file.
#[derive(Clone)]
pub struct TrustedCa {
    pub file: std::path::PathBuf,
    pub roots: Arc<RootCertStore>,
}

impl std::fmt::Debug for TrustedCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} ({} certificates)", self.file, self.roots.len())
    }
}

/// A module's `cert_file` and `key_file`, loaded: shown by their files.
pub struct ClientCert {
    pub files: (std::path::PathBuf, std::path::PathBuf),
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cert {:?}, key {:?}", self.files.0, self.files.1)
    }
}

/// A value that is never shown (`debug=true` prints modules): passwords,
/// tokens, header values.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
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
        let doc: file::FileDoc = crate::error::parse_yaml(text, file)?;
        let mut modules = Modules::builtin();
        let mut warnings = Vec::new();
        for (name, raw) in doc.modules {
            let line = raw.referenced.line();
            let at = |key: &str, why: String| format!("{file}:{line}: modules.{name}.{key}: {why}");
            let module = file::compile(&name, raw.value, dir, &at)?;
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
                "modules.m.tcp.query_response[0].expect: ",
            ),
            (
                "modules:\n  m:\n    prober: http\n    http:\n      proxy_url: http://p:3128\n",
                "b.yml:3: modules.m.http.proxy_url: portwarden's checks never go through a proxy",
            ),
            (
                "modules:\n  m:\n    prober: smtp\n",
                "b.yml:3: modules.m.prober: unknown prober 'smtp'",
            ),
            (
                "modules:\n  m:\n    prober: http\n    timeout: soon\n",
                "modules.m.timeout: invalid duration 'soon'",
            ),
            (
                "modules:\n  m:\n    prober: tcp\n    tcp:\n      tls_config: {ca_file: /nonexistent.pem}\n",
                "modules.m.tcp.tls_config.ca_file: cannot read /nonexistent.pem",
            ),
            (
                "modules:\n  m:\n    prober: udp\n    udp: {payload_hex: 'abc'}\n",
                "modules.m.udp.payload_hex: expected an even number",
            ),
        ] {
            let err = parse(text).expect_err(text);
            assert!(err.contains(want), "{text}\n→ {err}");
            assert!(err.starts_with("b.yml:"), "{err}");
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
        assert_eq!(m.headers, [("X-A".to_string(), Secret("b".into()))]);
        assert_eq!(m.authorization, Some(Secret("Basic dTpw".into())));
        let shown = format!("{m:?}");
        assert!(
            !shown.contains("dTpw") && shown.contains("<secret>"),
            "{shown}"
        );
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
