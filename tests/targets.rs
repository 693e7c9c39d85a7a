//! Checking by list against real servers (tests/zoo.py) in a network
//! namespace made for the test, whose /etc/hosts and resolv.conf are the
//! test's own (`ip netns exec` mounts /etc/netns/<name>/ over /etc): names
//! resolve from that hosts file, and a name it lacks is asked of
//! 127.0.0.1:53 inside the namespace, where nothing answers — no query ever
//! leaves the machine. Covered: `portwarden check` for every kind of target
//! (up/down and reason), certificate dates read back exactly, the targets
//! file in `serve` (families, reload on change, on SIGHUP, a broken file
//! kept out, DNS changes seen), and `/probe` beside Debian's
//! prometheus-blackbox-exporter given the same blackbox.yml.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The servers, their namespace, its /etc, and a CA and certificate.
struct Lab {
    ns: TestNetns,
    etc: PathBuf,
    dir: TempDir,
    zoo: Child,
    _zoo_stdin: ChildStdin,
    ports: BTreeMap<String, u16>,
    /// The server certificate's notBefore and notAfter (Unix seconds), as
    /// openssl reads them.
    not_before: i64,
    not_after: i64,
}

impl Lab {
    /// None (after saying why) when the test cannot run here.
    fn new(tag: &str) -> Option<Lab> {
        if !is_root() {
            cannot_run("checks by list run in a network namespace of their own: needs root");
            return None;
        }
        let ns = TestNetns::new(tag);
        let etc = PathBuf::from("/etc/netns").join(&ns.0);
        std::fs::create_dir_all(&etc).expect("mkdir /etc/netns/<ns>");
        std::fs::write(
            etc.join("hosts"),
            "127.0.0.1 localhost web.test\n::1 localhost\n",
        )
        .expect("hosts");
        std::fs::write(
            etc.join("resolv.conf"),
            "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
        )
        .expect("resolv.conf");
        let dir = TempDir::new(tag);
        make_certificates(&dir.0);
        let (not_before, not_after) = dates(&dir.0.join("web.pem"));
        let zoo_py = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/zoo.py");
        let mut zoo = Command::new("ip")
            .args(["netns", "exec", &ns.0, "python3"])
            .arg(&zoo_py)
            .arg(dir.0.join("web-chain.pem"))
            .arg(dir.0.join("web.key"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 tests/zoo.py");
        let stdin = zoo.stdin.take().expect("stdin");
        let mut line = String::new();
        BufReader::new(zoo.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("zoo reports its ports");
        let ports: BTreeMap<String, u16> =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("zoo said {line:?}: {e}"));
        Some(Lab {
            ns,
            etc,
            dir,
            zoo,
            _zoo_stdin: stdin,
            ports,
            not_before,
            not_after,
        })
    }

    fn port(&self, name: &str) -> u16 {
        self.ports[name]
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.0.join(file)
    }

    /// `program` inside the namespace.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns.0]).arg(program);
        cmd
    }

    /// Rewrites the namespace's /etc/hosts in place (the file mounted over
    /// /etc/hosts is the same inode): the next lookup sees it.
    fn set_hosts(&self, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(self.etc.join("hosts"))
            .expect("hosts");
        f.write_all(text.as_bytes()).expect("write hosts");
    }

    /// The modules both exporters are given: blackbox's format.
    fn blackbox_yml(&self) -> PathBuf {
        let ca = self.path("ca.pem");
        let ca = ca.display();
        let text = format!(
            r#"modules:
  tcp_connect:
    prober: tcp
    timeout: 2s
  http_2xx:
    prober: http
    timeout: 2s
  http_no_redirect:
    prober: http
    timeout: 2s
    http:
      no_follow_redirects: true
  http_body:
    prober: http
    timeout: 2s
    http:
      fail_if_body_not_matches_regexp: ["hello portwarden"]
  http_not_maintenance:
    prober: http
    timeout: 2s
    http:
      fail_if_header_matches:
        - header: X-Mode
          regexp: maintenance
  https_ca:
    prober: http
    timeout: 2s
    http:
      tls_config:
        ca_file: {ca}
  http_post:
    prober: http
    timeout: 2s
    http:
      method: POST
      body: "hello"
      fail_if_body_not_matches_regexp: ["^posted:hello$"]
  http_404_wanted:
    prober: http
    timeout: 2s
    http:
      valid_status_codes: [404]
  http_ip4:
    prober: http
    timeout: 2s
    http:
      preferred_ip_protocol: ip4
  http_must_be_tls:
    prober: http
    timeout: 2s
    http:
      fail_if_not_ssl: true
  https_must_not_be_tls:
    prober: http
    timeout: 2s
    http:
      fail_if_ssl: true
      tls_config:
        ca_file: {ca}
  https_insecure:
    prober: http
    timeout: 2s
    http:
      tls_config:
        insecure_skip_verify: true
  https_wrong_name:
    prober: http
    timeout: 2s
    http:
      tls_config:
        ca_file: {ca}
        server_name: other.test
  tls_ca:
    prober: tcp
    timeout: 2s
    tcp:
      tls: true
      tls_config:
        ca_file: {ca}
  tls_system:
    prober: tcp
    timeout: 2s
    tcp:
      tls: true
  ssh_banner:
    prober: tcp
    timeout: 2s
    tcp:
      query_response:
        - expect: "^SSH-2.0-"
        - send: "SSH-2.0-portwarden-test"
  smtp_banner:
    prober: tcp
    timeout: 2s
    tcp:
      query_response:
        - expect: "^220 "
  http_auth:
    prober: http
    timeout: 2s
    http:
      headers:
        X-Api-Key: k3y-value
      basic_auth:
        username: u
        password: hunter2
  icmp:
    prober: icmp
"#
        );
        let path = self.path("blackbox.yml");
        std::fs::write(&path, text).expect("blackbox.yml");
        path
    }

    /// blackbox.yml and UDP modules of ours (which blackbox_exporter, not
    /// knowing a `udp:` section, would refuse).
    fn modules_yml(&self) -> PathBuf {
        let mut text = std::fs::read_to_string(self.blackbox_yml()).expect("blackbox.yml");
        text.push_str(
            r#"  udp_echo:
    prober: udp
    timeout: 1s
    udp:
      payload: ping
      expect: "^echo:ping$"
  udp_silence_ok:
    prober: udp
    timeout: 1s
    udp:
      silence_is_success: true
"#,
        );
        let path = self.path("modules.yml");
        std::fs::write(&path, text).expect("modules.yml");
        path
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.zoo.kill();
        let _ = self.zoo.wait();
        let _ = std::fs::remove_dir_all(&self.etc);
    }
}

/// A CA, and a certificate it signed for web.test and 127.0.0.1, valid for
/// 30 days from now; `web-chain.pem` is what the servers present.
fn make_certificates(dir: &Path) {
    self_signed(dir, "ca", "/CN=zoo test CA", 3650);
    issue(
        dir,
        "web",
        "subjectAltName=DNS:web.test,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        30,
    );
    let chain = [
        std::fs::read(dir.join("web.pem")).expect("web.pem"),
        std::fs::read(dir.join("ca.pem")).expect("ca.pem"),
    ]
    .concat();
    std::fs::write(dir.join("web-chain.pem"), chain).expect("chain");
}

/// notBefore and notAfter of a certificate, by openssl and GNU date.
fn dates(cert: &Path) -> (i64, i64) {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-startdate", "-enddate", "-in"])
        .arg(cert)
        .output()
        .expect("openssl x509");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let seconds = |key: &str| -> i64 {
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("{key} in {text}"));
        let out = Command::new("date")
            .args(["-u", "-d", value, "+%s"])
            .output()
            .expect("date");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("seconds")
    };
    (seconds("notBefore="), seconds("notAfter="))
}

/// A child process killed and reaped on drop.
/// `portwarden check` inside the lab's namespace.
fn check_in(lab: &Lab, args: &[&str]) -> Output {
    lab.command(bin())
        .arg("check")
        .args(args)
        .output()
        .expect("portwarden check")
}

fn by_name(rows: &[Value]) -> BTreeMap<String, Value> {
    rows.iter()
        .map(|r| (r["name"].as_str().expect("name").to_string(), r.clone()))
        .collect()
}

#[test]
fn check_sees_every_kind_up_or_down_with_its_reason() {
    let Some(lab) = Lab::new("check") else {
        return;
    };
    let modules = lab.modules_yml();
    let p = |k: &str| lab.port(k);
    let targets = format!(
        r#"targets:
  - {{name: tcp_open, target: "127.0.0.1:{open}"}}
  - {{name: tcp_refused, target: "tcp://127.0.0.1:{closed}"}}
  - {{name: tcp_never_accepting, target: "127.0.0.1:{never}"}}
  - {{name: http_200, target: "http://web.test:{http}/ok"}}
  - {{name: http_302_followed, target: "http://web.test:{http}/redirect"}}
  - {{name: http_302, target: "http://web.test:{http}/redirect", module: http_no_redirect}}
  - {{name: http_404, target: "http://web.test:{http}/missing"}}
  - {{name: http_503, target: "http://web.test:{http}/busy"}}
  - {{name: http_hangs_after_headers, target: "http://web.test:{http}/hang"}}
  - {{name: http_body, target: "http://web.test:{http}/ok", module: http_body}}
  - {{name: http_body_no_match, target: "http://web.test:{http}/maintenance", module: http_body}}
  - {{name: http_header_match, target: "http://web.test:{http}/maintenance", module: http_not_maintenance}}
  - {{name: https_trusted, target: "https://web.test:{https}/ok", module: https_ca}}
  - {{name: https_untrusted, target: "https://web.test:{https}/ok"}}
  - {{name: tls_trusted, target: "tls://web.test:{https}", module: tls_ca}}
  - {{name: tls_untrusted, target: "tls://web.test:{https}", module: tls_system}}
  - {{name: banner, target: "127.0.0.1:{banner}", module: ssh_banner}}
  - {{name: banner_no_match, target: "127.0.0.1:{banner}", module: smtp_banner}}
  - {{name: udp_echo, target: "udp://127.0.0.1:{echo}", module: udp_echo}}
  - {{name: udp_closed, target: "udp://127.0.0.1:{uclosed}"}}
  - {{name: udp_silent, target: "udp://127.0.0.1:{silent}"}}
  - {{name: udp_silent_ok, target: "udp://127.0.0.1:{silent}", module: udp_silence_ok}}
  - {{name: unresolvable, target: "nowhere.test:80"}}
  - {{name: tls_plain, target: "tls://web.test:{http}", module: tls_ca}}
  - {{name: unreachable, target: "tcp://10.255.255.1:80"}}
  - {{name: redirect_denied, target: "http://web.test:{http}/metadata"}}
"#,
        open = p("tcp_open"),
        closed = p("tcp_closed"),
        never = p("tcp_never"),
        http = p("http"),
        https = p("https"),
        banner = p("banner"),
        echo = p("udp_echo"),
        uclosed = p("udp_closed"),
        silent = p("udp_silent"),
    );
    let file = lab.path("targets.yml");
    std::fs::write(&file, targets).expect("targets.yml");
    let started = Instant::now();
    let out = check_in(
        &lab,
        &[
            "--json",
            "--timeout",
            "2s",
            "--modules.file",
            modules.to_str().expect("utf-8"),
            "-f",
            file.to_str().expect("utf-8"),
        ],
    );
    let took = started.elapsed();
    assert_eq!(
        out.status.code(),
        Some(1),
        "some fail: exit 1; stderr {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON array");
    assert_eq!(rows.len(), 26, "one row per target, in order");
    assert_eq!(rows[0]["name"], "tcp_open");
    let rows = by_name(&rows);
    let expect = |name: &str, success: bool, reason: Option<&str>| {
        let r = &rows[name];
        assert_eq!(r["success"], success, "{name}: {r}");
        assert_eq!(r["reason"].as_str(), reason, "{name}: {r}");
        assert!(r["ours"].is_null(), "{name}: nothing of ours failed: {r}");
        // A failure says what happened in words, after its reason word.
        match reason {
            Some(reason) => assert!(
                r["error"].as_str().is_some_and(
                    |e| e.starts_with(&format!("{reason}: ")) && e.len() > reason.len() + 8
                ),
                "{name}: {r}"
            ),
            None => assert!(r["error"].is_null(), "{name}: {r}"),
        }
    };
    expect("tcp_open", true, None);
    expect("tcp_refused", false, Some("refused"));
    expect("tcp_never_accepting", false, Some("timeout"));
    expect("http_200", true, None);
    expect("http_302_followed", true, None);
    expect("http_302", false, Some("http_status"));
    expect("http_404", false, Some("http_status"));
    expect("http_503", false, Some("http_status"));
    expect("http_hangs_after_headers", false, Some("timeout"));
    expect("http_body", true, None);
    expect("http_body_no_match", false, Some("no_match"));
    expect("http_header_match", false, Some("no_match"));
    expect("https_trusted", true, None);
    expect("https_untrusted", false, Some("tls"));
    expect("tls_trusted", true, None);
    expect("tls_untrusted", false, Some("tls"));
    expect("banner", true, None);
    expect("banner_no_match", false, Some("no_match"));
    expect("udp_echo", true, None);
    expect("udp_closed", false, Some("closed"));
    expect("udp_silent", false, Some("timeout"));
    expect("udp_silent_ok", true, None);
    expect("unresolvable", false, Some("dns"));
    expect("tls_plain", false, Some("tls"));
    expect("unreachable", false, Some("unreachable"));
    expect("redirect_denied", false, Some("denied"));
    // The words, reason by reason.
    let said = |name: &str| rows[name]["error"].as_str().expect("error").to_string();
    for (name, words) in [
        (
            "tcp_refused",
            format!("refused: nothing listens on 127.0.0.1:{}", p("tcp_closed")),
        ),
        (
            "http_302",
            "http_status: the server answered HTTP 302, not 2xx".to_string(),
        ),
        (
            "http_404",
            "http_status: the server answered HTTP 404, not 2xx".into(),
        ),
        (
            "http_body_no_match",
            "no_match: the body did not match".into(),
        ),
        ("http_header_match", "no_match: the ".into()),
        (
            "https_untrusted",
            "tls: the server's certificate is signed by an authority not trusted here".into(),
        ),
        (
            "tls_plain",
            "tls: the server answered in plain text (HTTP?), not TLS".into(),
        ),
        (
            "udp_closed",
            format!(
                "closed: 127.0.0.1:{} answered \"port unreachable\": nothing listens on it",
                p("udp_closed")
            ),
        ),
        (
            "udp_silent",
            format!(
                "timeout: no reply from 127.0.0.1:{} within the timeout",
                p("udp_silent")
            ),
        ),
        ("unresolvable", "dns: nowhere.test: no such host".into()),
        (
            "unreachable",
            "unreachable: 10.255.255.1:80: the network is unreachable".into(),
        ),
        ("tcp_never_accepting", "timeout: ".into()),
        ("redirect_denied", "denied: 169.254.169.254 is in a network checks may not connect to (in the deny list (--probe.deny))".into()),
    ] {
        assert!(
            said(name).starts_with(&words),
            "{name}: {} (wanted {words})",
            said(name)
        );
    }

    for (name, status) in [
        ("http_200", 200),
        ("http_302_followed", 200),
        ("http_302", 302),
        ("http_404", 404),
        ("http_503", 503),
        ("http_hangs_after_headers", 200),
        ("https_trusted", 200),
    ] {
        assert_eq!(rows[name]["http_status"], status, "{name}");
    }
    assert!(rows["https_untrusted"]["http_status"].is_null());
    for (name, class) in [
        ("udp_echo", "open"),
        ("udp_closed", "closed"),
        ("udp_silent", "open|filtered"),
        ("udp_silent_ok", "open|filtered"),
    ] {
        assert_eq!(rows[name]["udp_class"], class, "{name}");
    }
    // The certificate's dates, read back exactly: from a trusted handshake
    // and from one that failed verification alike.
    for name in [
        "https_trusted",
        "tls_trusted",
        "tls_untrusted",
        "https_untrusted",
    ] {
        let r = &rows[name];
        assert_eq!(r["tls_not_after"], lab.not_after, "{name}: {r}");
        assert_eq!(r["tls_not_before"], lab.not_before, "{name}: {r}");
    }
    assert_eq!(rows["tls_trusted"]["tls_version"], "TLS 1.3");
    assert!(
        rows["tcp_open"]["tls_not_after"].is_null(),
        "no certificate, no date"
    );
    // The slowest end by the 2 s timeout, and run concurrently: far less
    // than the sum of their timeouts.
    assert!(took < Duration::from_secs(8), "took {took:?}");
    let slow = rows["tcp_never_accepting"]["seconds"]
        .as_f64()
        .expect("seconds");
    assert!(
        (1.9..3.0).contains(&slow),
        "never-accepting ends by the timeout: {slow}"
    );
}

#[test]
fn check_lines_and_exit_statuses() {
    // Loopback of our own namespace: a listener of the test's, a port
    // nothing listens on.
    let open = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let open_port = open.local_addr().expect("addr").port();
    let closed_port = free_port();
    let ok = format!("127.0.0.1:{open_port}");
    let out = run(&["check", &ok, &format!("tcp://[::1]:{closed_port}")], &[]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with(&format!("✔ {ok} ")), "{text}");
    assert!(lines[0].ends_with(" ms"), "{text}");
    assert!(
        lines[1].starts_with(&format!("✘ tcp://[::1]:{closed_port}"))
            && lines[1].ends_with(&format!("refused: nothing listens on [::1]:{closed_port}")),
        "{text}"
    );

    let out = run(&["check", &ok], &[]);
    assert_eq!(out.status.code(), Some(0), "all pass: 0");

    // Bad input: status 2, a message naming what is wrong, nothing checked.
    let dir = TempDir::new("check-input");
    let write = |name: &str, text: &str| {
        let p = dir.0.join(name);
        std::fs::write(&p, text).expect("write");
        p.display().to_string()
    };
    let dup = write(
        "dup.yml",
        "targets:\n  - {name: a, target: 'x:1'}\n  - {name: a, target: 'y:1'}\n",
    );
    let bad_yaml = write("bad.yml", "targets: [\n");
    let unknown_module = write(
        "mod.yml",
        "targets:\n  - {target: '127.0.0.1:1', module: nope}\n",
    );
    let bad_key = write(
        "bb.yml",
        "modules:\n  m:\n    prober: http\n    http:\n      valid_status_code: [200]\n",
    );
    let bad_cert = write(
        "cert.yml",
        "modules:\n  m:\n    prober: tcp\n    tcp:\n      tls: true\n      tls_config: {ca_file: /etc/hostname}\n",
    );
    for (args, want) in [
        (vec!["check"], "nothing to check"),
        (vec!["check", "db"], "invalid target 'db': no port"),
        (vec!["check", "ftp://x:21"], "unknown scheme 'ftp'"),
        (vec!["check", "x:1", "x:1"], "given twice"),
        (
            vec!["check", "-f", &dup],
            "dup.yml:3: targets[1].name: 'a' is the name of an earlier target",
        ),
        (vec!["check", "-f", &bad_yaml], "bad.yml"),
        (
            vec!["check", "-f", &unknown_module],
            "targets[0].module: unknown module 'nope'",
        ),
        (
            vec!["check", "--modules.file", &bad_key, "x:1"],
            "valid_status_code",
        ),
        (
            vec!["check", "--modules.file", &bad_cert, "x:1"],
            "modules.m.tcp.tls_config.ca_file: no PEM certificate",
        ),
        (vec!["check", "--timeout", "soon", "x:1"], "--timeout"),
    ] {
        let out = run(&args, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing checked");
    }
    drop(open);
}

#[test]
fn serve_refuses_a_broken_targets_or_modules_file_at_the_start() {
    let dir = TempDir::new("serve-input");
    let bad_key = dir.0.join("bb.yml");
    std::fs::write(
        &bad_key,
        "modules:\n  m:\n    prober: tcp\n    tcp:\n      tls: true\n      tls_confg: {}\n",
    )
    .expect("write");
    let unknown = dir.0.join("t.yml");
    std::fs::write(
        &unknown,
        "targets:\n  - {target: 'https://x/', module: tcp_connect}\n",
    )
    .expect("write");
    for (args, want) in [
        (
            vec!["serve", "--modules.file", bad_key.to_str().expect("utf-8")],
            "--modules.file / PORTWARDEN_MODULES_FILE: ",
        ),
        (
            vec!["serve", "--targets.file", unknown.to_str().expect("utf-8")],
            "targets[0].module: target 'https://x/' does not fit module 'tcp_connect'",
        ),
    ] {
        let out = run(&args, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        if args[1] == "--modules.file" {
            assert!(err.contains("bb.yml") && err.contains("tls_confg"), "{err}");
        }
    }
}

fn value(text: &str, family: &str, name: &str) -> Option<f64> {
    let prefix = format!("{family}{{name=\"{name}\"");
    text.lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn failures(text: &str, name: &str, reason: &str) -> f64 {
    let line = format!("portwarden_target_failures_total{{name=\"{name}\",reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(line.as_str()))
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1.0)
}

#[test]
fn serve_checks_the_targets_file_and_reloads_it() {
    let Some(lab) = Lab::new("serve") else {
        return;
    };
    let modules = lab.modules_yml();
    // The CA file a module reads is not watched: a new one is taken on
    // SIGHUP. It starts wrong (the server's own certificate is no CA).
    let rotating_ca = lab.path("rotating-ca.pem");
    std::fs::copy(lab.path("web.pem"), &rotating_ca).expect("copy");
    let mut text = std::fs::read_to_string(&modules).expect("read");
    text.push_str(&format!(
        "  tls_rotating:\n    prober: tcp\n    tcp:\n      tls: true\n      tls_config:\n        ca_file: {}\n",
        rotating_ca.display()
    ));
    std::fs::write(&modules, text).expect("write");
    let targets = lab.path("targets.yml");
    let file = |extra: &str| {
        format!(
            "targets:\n  - {{name: web, target: 'http://web.test:{http}/ok', labels: {{team: edge}}}}\n  - {{name: cert, target: 'tls://web.test:{https}', module: tls_ca, interval: 1s}}\n  - {{name: rotating, target: 'tls://web.test:{https}', module: tls_rotating, interval: 1s}}\n  - {{name: down, target: '127.0.0.1:{closed}', interval: 1s}}\n  - {{name: echo, target: 'udp://127.0.0.1:{echo}', module: udp_echo}}\n  - {{name: nowhere, target: 'nowhere.test:80'}}\n{extra}",
            http = lab.port("http"),
            https = lab.port("https"),
            closed = lab.port("tcp_closed"),
            echo = lab.port("udp_echo"),
        )
    };
    std::fs::write(&targets, file("")).expect("targets");
    let mut cmd = lab.command(bin());
    cmd.args(["serve", "--targets.interval", "1s"]);
    let exporter = Exporter::start_cmd_in(
        cmd,
        &lab.ns.0,
        &[
            ("PORTWARDEN_TARGETS_FILE", targets.to_str().expect("utf-8")),
            ("PORTWARDEN_MODULES_FILE", modules.to_str().expect("utf-8")),
        ],
    );
    let text = exporter.wait_for(15, "every target checked", |t| {
        ["web", "cert", "rotating", "down", "echo", "nowhere"]
            .iter()
            .all(|n| value(t, "portwarden_target_up", n).is_some())
    });
    assert!(
        text.contains("portwarden_target_up{name=\"web\",target=\"http://web.test:")
            && text.contains("/ok\",module=\"http_2xx\",team=\"edge\"} 1"),
        "the target's own labels: {text}"
    );
    for (name, up) in [
        ("web", 1.0),
        ("cert", 1.0),
        ("rotating", 0.0),
        ("down", 0.0),
        ("echo", 1.0),
        ("nowhere", 0.0),
    ] {
        assert_eq!(
            value(&text, "portwarden_target_up", name),
            Some(up),
            "{name}"
        );
    }
    assert_eq!(
        value(&text, "portwarden_target_tls_not_after_seconds", "cert"),
        Some(lab.not_after as f64)
    );
    assert_eq!(
        value(&text, "portwarden_target_tls_not_before_seconds", "cert"),
        Some(lab.not_before as f64)
    );
    assert_eq!(
        value(&text, "portwarden_target_tls_not_after_seconds", "web"),
        None,
        "no certificate, no series"
    );
    assert_eq!(
        value(&text, "portwarden_target_http_status_code", "web"),
        Some(200.0)
    );
    assert!(
        text.contains("portwarden_target_udp_class{name=\"echo\","),
        "{text}"
    );
    assert!(failures(&text, "down", "refused") >= 1.0, "{text}");
    assert_eq!(
        failures(&text, "web", "refused"),
        0.0,
        "every reason from the start"
    );
    assert!(failures(&text, "nowhere", "dns") >= 1.0);
    assert!(failures(&text, "rotating", "tls") >= 1.0);
    assert_eq!(promtool_check(&text), "", "promtool is clean");

    // The CA file changes: nothing watched changed, so nothing is reloaded…
    std::fs::copy(lab.path("ca.pem"), &rotating_ca).expect("copy");
    let before = failures(&checked(&exporter, "rotating", 2), "rotating", "tls");
    assert!(before >= 1.0);
    let t = exporter.scrape();
    assert_eq!(value(&t, "portwarden_target_up", "rotating"), Some(0.0));
    // …until SIGHUP.
    // `ip netns exec` execs the binary: its pid is the exporter's.
    let pid = exporter.pid();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill")
            .success()
    );
    exporter.wait_for(10, "the rotated CA in force", |t| {
        value(t, "portwarden_target_up", "rotating") == Some(1.0)
    });

    // A broken file: counted, and the targets in force stay.
    std::fs::write(&targets, "targets: [\n").expect("break");
    let t = exporter.wait_for(10, "the failed reload counted", |t| {
        t.contains("portwarden_targets_reload_failures_total 1")
    });
    assert!(t.contains("portwarden_targets_last_reload_successful 0"));
    assert_eq!(value(&t, "portwarden_target_up", "web"), Some(1.0));
    // A good one: a new target in, the counter stays.
    std::fs::write(
        &targets,
        file(&format!(
            "  - {{name: fresh, target: '127.0.0.1:{}'}}\n",
            lab.port("tcp_open")
        )),
    )
    .expect("fix");
    let t = exporter.wait_for(10, "the new target checked", |t| {
        value(t, "portwarden_target_up", "fresh") == Some(1.0)
    });
    assert!(t.contains("portwarden_targets_last_reload_successful 1"));
    assert!(t.contains("portwarden_targets_reload_failures_total 1"));

    // DNS changes: web.test now names an address nothing listens on.
    lab.set_hosts("127.0.0.2 web.test\n127.0.0.1 localhost\n");
    let t = exporter.wait_for(25, "the new address checked", |t| {
        value(t, "portwarden_target_up", "web") == Some(0.0)
            && value(t, "portwarden_target_up", "cert") == Some(0.0)
    });
    assert!(failures(&t, "web", "refused") >= 1.0, "{t}");
}

/// Waits until the target `name` was checked `n` more times.
fn checked(exporter: &Exporter, name: &str, n: u32) -> String {
    let checks = |t: &str| -> f64 {
        let prefix = format!("portwarden_target_failures_total{{name=\"{name}\",");
        let failed: f64 = t
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        failed
    };
    let start = checks(&exporter.scrape());
    exporter.wait_for(15, "more checks", |t| checks(t) >= start + f64::from(n))
}

/// Probes through `/probe` of a server at `addr` inside `ns`.
fn probe(ns: &str, addr: std::net::SocketAddr, target: &str, module: &str) -> (String, String) {
    let path = format!("/probe?target={}&module={module}", percent_encode(target));
    let (head, body) = in_netns(ns, || {
        http_get(addr, &path, &[("X-Prometheus-Scrape-Timeout-Seconds", "5")])
    })
    .expect("probe");
    (head, String::from_utf8_lossy(&body).into_owned())
}

/// A family's value without labels, as either exporter writes it (Go's
/// `1.798621332e+09` too).
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map(|v| v.trim().parse().expect("a number"))
}

#[test]
fn probe_agrees_with_blackbox_exporter() {
    let Some(lab) = Lab::new("probe") else {
        return;
    };
    let Some(blackbox_bin) = ["/usr/bin/prometheus-blackbox-exporter"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
    else {
        cannot_run(
            "prometheus-blackbox-exporter is missing (apt-get install prometheus-blackbox-exporter; .ci/run does)",
        );
        return;
    };
    let modules = lab.blackbox_yml();
    let bb_port = free_port();
    let bb_addr: std::net::SocketAddr = format!("127.0.0.1:{bb_port}").parse().expect("addr");
    // Killed when the test ends, passed or failed.
    let _blackbox = Killed(
        lab.command(&blackbox_bin)
            .arg(format!("--config.file={}", modules.display()))
            .arg(format!("--web.listen-address={bb_addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start blackbox_exporter"),
    );
    let mut cmd = lab.command(bin());
    cmd.args([
        "serve",
        "--web.probe",
        "--modules.file",
        modules.to_str().expect("utf-8"),
    ]);
    let ours = Exporter::start_cmd_in(cmd, &lab.ns.0, &[]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while in_netns(&lab.ns.0, || http_get(bb_addr, "/-/healthy", &[])).is_err() {
        assert!(
            Instant::now() < deadline,
            "blackbox_exporter did not come up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let p = |k: &str| lab.port(k);
    let http = |path: &str| format!("http://web.test:{}{path}", p("http"));
    // (target, module, the probe_success both must say)
    let cases: Vec<(String, &str, f64)> = vec![
        (format!("127.0.0.1:{}", p("tcp_open")), "tcp_connect", 1.0),
        (format!("127.0.0.1:{}", p("tcp_closed")), "tcp_connect", 0.0),
        (format!("127.0.0.1:{}", p("tcp_never")), "tcp_connect", 0.0),
        (http("/ok"), "http_2xx", 1.0),
        (http("/redirect"), "http_2xx", 1.0),
        (http("/redirect"), "http_no_redirect", 0.0),
        (http("/missing"), "http_2xx", 0.0),
        (http("/busy"), "http_2xx", 0.0),
        (http("/hang"), "http_2xx", 0.0),
        (http("/ok"), "http_body", 1.0),
        (http("/maintenance"), "http_body", 0.0),
        (http("/missing"), "http_body", 0.0),
        (http("/maintenance"), "http_not_maintenance", 0.0),
        (http("/ok"), "http_not_maintenance", 0.0),
        (http("/ok"), "http_post", 1.0),
        (http("/missing"), "http_404_wanted", 1.0),
        (http("/ok"), "http_must_be_tls", 0.0),
        (
            format!("http://localhost:{}/ok", p("http")),
            "http_ip4",
            1.0,
        ),
        (
            format!("http://localhost:{}/ok", p("http")),
            "http_2xx",
            0.0,
        ),
        (
            format!("https://web.test:{}/ok", p("https")),
            "https_ca",
            1.0,
        ),
        (
            format!("https://web.test:{}/ok", p("https")),
            "http_2xx",
            0.0,
        ),
        (
            format!("https://web.test:{}/ok", p("https")),
            "https_must_not_be_tls",
            0.0,
        ),
        (
            format!("https://web.test:{}/ok", p("https")),
            "https_insecure",
            1.0,
        ),
        (
            format!("https://web.test:{}/ok", p("https")),
            "https_wrong_name",
            0.0,
        ),
        (format!("web.test:{}", p("https")), "tls_ca", 1.0),
        (format!("web.test:{}", p("https")), "tls_system", 0.0),
        (format!("127.0.0.1:{}", p("banner")), "ssh_banner", 1.0),
        (format!("127.0.0.1:{}", p("banner")), "smtp_banner", 0.0),
        ("nowhere.test:80".to_string(), "tcp_connect", 0.0),
        ("http://nowhere.test/".to_string(), "http_2xx", 0.0),
    ];
    let compared = [
        "probe_success",
        "probe_ip_protocol",
        "probe_http_status_code",
        "probe_ssl_earliest_cert_expiry",
        "probe_failed_due_to_regex",
    ];
    let mut disagreements = Vec::new();
    for (target, module, success) in &cases {
        let (head_ours, text_ours) = probe(&lab.ns.0, ours.addr, target, module);
        let (head_bb, text_bb) = probe(&lab.ns.0, bb_addr, target, module);
        assert!(
            head_ours.contains(" 200 "),
            "{target} {module}: {head_ours}\n{text_ours}"
        );
        assert!(
            head_bb.contains(" 200 "),
            "{target} {module}: {head_bb}\n{text_bb}"
        );
        assert_eq!(
            metric(&text_ours, "probe_success"),
            Some(*success),
            "{target} {module}:\n{text_ours}"
        );
        for name in compared {
            let (a, b) = (metric(&text_ours, name), metric(&text_bb, name));
            if a != b {
                disagreements.push(format!(
                    "{target} {module} {name}: portwarden {a:?}, blackbox {b:?}"
                ));
            }
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
    // And the answers are the expected ones, not merely the same.
    let (_, t) = probe(
        &lab.ns.0,
        ours.addr,
        &format!("web.test:{}", p("https")),
        "tls_ca",
    );
    assert_eq!(
        metric(&t, "probe_ssl_earliest_cert_expiry"),
        Some(lab.not_after as f64)
    );
    assert_eq!(metric(&t, "probe_success"), Some(1.0));
    let (_, t) = probe(&lab.ns.0, ours.addr, &http("/busy"), "http_2xx");
    assert_eq!(metric(&t, "probe_http_status_code"), Some(503.0));
    assert_eq!(promtool_check(&t), "", "promtool is clean");

    // Where the two differ on purpose: a prober we do not have is a 400
    // naming it, an unknown module a 400 (as blackbox), debug=true the log.
    let (head, body) = probe(&lab.ns.0, ours.addr, "127.0.0.1", "icmp");
    assert!(
        head.contains(" 400 ") && body.contains("icmp prober"),
        "{head}{body}"
    );
    let (head, body) = probe(&lab.ns.0, ours.addr, "127.0.0.1:1", "nope");
    assert!(
        head.contains(" 400 ") && body.contains("Unknown module \"nope\""),
        "{head}{body}"
    );
    let (head, _) = in_netns(&lab.ns.0, || {
        http_get(ours.addr, "/probe?module=tcp_connect", &[])
    })
    .expect("GET");
    assert!(head.contains(" 400 "), "no target: {head}");
    let (_, debug) = in_netns(&lab.ns.0, || {
        http_get(
            ours.addr,
            &format!(
                "/probe?module=tcp_connect&debug=true&target=127.0.0.1:{}",
                p("tcp_closed")
            ),
            &[],
        )
    })
    .expect("debug");
    let debug = String::from_utf8_lossy(&debug);
    assert!(
        debug.contains("Logs for the probe:") && debug.contains("Connection refused"),
        "{debug}"
    );
    assert!(debug.contains("probe_success 0"), "{debug}");
    // The module is shown, its secrets are not.
    let (_, debug) = in_netns(&lab.ns.0, || {
        http_get(
            ours.addr,
            &format!(
                "/probe?module=http_auth&debug=true&target={}",
                percent_encode(&http("/ok"))
            ),
            &[],
        )
    })
    .expect("debug");
    let debug = String::from_utf8_lossy(&debug);
    assert!(
        debug.contains("Module configuration:") && debug.contains("<secret>"),
        "{debug}"
    );
    for secret in ["hunter2", "dTpodW50ZXIy", "k3y-value"] {
        assert!(!debug.contains(secret), "{secret} shown:\n{debug}");
    }
}

#[test]
fn check_keeps_within_its_bound_on_checks_at_once() {
    let Some(lab) = Lab::new("bound") else {
        return;
    };
    // Four checks of a listener that never accepts: each takes the whole
    // 1 s timeout. Two at a time: two seconds, not one.
    let never = format!("127.0.0.1:{}", lab.port("tcp_never"));
    let file = lab.path("never.yml");
    let entries: String = (0..4)
        .map(|i| format!("  - {{name: n{i}, target: '{never}'}}\n"))
        .collect();
    std::fs::write(&file, format!("targets:\n{entries}")).expect("write");
    let started = Instant::now();
    let out = check_in(
        &lab,
        &[
            "--concurrency",
            "2",
            "--timeout",
            "1s",
            "-f",
            file.to_str().expect("utf-8"),
        ],
    );
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with('✘') && l.contains("  timeout: "))
            .count(),
        4,
        "{text}"
    );
    assert!(
        (Duration::from_millis(1900)..Duration::from_millis(3500)).contains(&took),
        "two rounds of two: {took:?}"
    );
}

#[test]
fn the_built_in_modules_try_every_address_of_a_name() {
    let Some(lab) = Lab::new("every") else {
        return;
    };
    // localhost is ::1 and 127.0.0.1 there; the zoo listens on 127.0.0.1.
    let target = format!("localhost:{}", lab.port("tcp_open"));
    let out = check_in(&lab, &["--json", &target]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(rows[0]["ip_protocol"], 4, "{}", rows[0]);
    // A file's tcp_connect means what blackbox_exporter's does: the IPv6
    // address only, refused.
    let modules = lab.blackbox_yml();
    let out = check_in(
        &lab,
        &[
            "--json",
            "--modules.file",
            modules.to_str().expect("utf-8"),
            &target,
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        (rows[0]["reason"].as_str(), rows[0]["ip_protocol"].as_u64()),
        (Some("refused"), Some(6))
    );
}

#[test]
fn probe_is_off_unless_asked_for() {
    let _one_at_a_time = serial();
    let open = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let path = format!(
        "/probe?module=tcp_connect&target=127.0.0.1:{}",
        open.local_addr().expect("addr").port()
    );
    let on = Exporter::start(&[
        ("ENABLE_HTTP_DETECTION", "false"),
        ("PORTWARDEN_WEB_PROBE", "true"),
    ]);
    let (head, body) = on.get(&path).expect("probe");
    assert!(head.contains(" 200 "), "{head}");
    assert!(String::from_utf8_lossy(&body).contains("probe_success 1"));
    let (_, page) = on.get("/").expect("status page");
    assert!(String::from_utf8_lossy(&page).contains("/probe?target="));
    drop(on);
    // The default: no /probe, and the page does not name it.
    let off = Exporter::start(&[("ENABLE_HTTP_DETECTION", "false")]);
    let (head, _) = off.get(&path).expect("probe");
    assert!(head.contains(" 404 "), "{head}");
    let (_, page) = off.get("/").expect("status page");
    assert!(!String::from_utf8_lossy(&page).contains("/probe"));
    drop(off);
    let off = Exporter::start(&[
        ("ENABLE_HTTP_DETECTION", "false"),
        ("PORTWARDEN_WEB_PROBE", "false"),
    ]);
    let (head, _) = off.get(&path).expect("probe");
    assert!(head.contains(" 404 "), "{head}");
}
