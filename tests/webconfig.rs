//! `--web.config.file` against the real thing: the same file is given to
//! Debian's `prometheus-node-exporter` (Go, exporter-toolkit) and to
//! portwarden, the same requests go to both, and every outcome must match:
//! no auth, wrong password, right password, unknown user, no client
//! certificate where one is required, a certificate from no known CA, plain
//! HTTP to the TLS port, a TLS version the server does not allow, for each
//! of the five client auth types. Then portwarden's own promises: reload on
//! change and on SIGHUP, a broken file keeps the config in force, unknown
//! keys refused with exit status 2.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TempDir, bin, cannot_run, free_port, issue, self_signed};
use serde_json::{Value, json};

const PASSWORD: &str = "s3cret pass";

/// Certificates made with openssl: a CA, a server certificate for
/// 127.0.0.1/localhost and a client certificate it signed, and a
/// self-signed client certificate no CA vouches for.
struct Pki {
    dir: TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = TempDir::new("pki");
        self_signed(&dir.0, "ca", "/CN=test-ca", 30);
        let server = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n";
        issue(&dir.0, "server", server, 30);
        issue(&dir.0, "server2", server, 30);
        issue(&dir.0, "client", "extendedKeyUsage=clientAuth\n", 30);
        self_signed(&dir.0, "rogue", "/CN=rogue", 30);
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.0.join(name).display().to_string()
    }
}

/// A server under test: waits until its port accepts connections.
struct Running {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Running {
    fn start(mut cmd: Command, port: u16, log: PathBuf) -> Running {
        let file = std::fs::File::create(&log).expect("log file");
        cmd.stdout(Stdio::null()).stderr(file);
        let mut child = cmd.spawn().expect("start server");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "server exited with {status}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "server did not come up on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Running { child, port, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn portwarden(config: &Path, dir: &Path, extra: &[&str]) -> Running {
    let port = free_port();
    let mut cmd = Command::new(bin());
    cmd.args([
        "serve",
        "--web.listen-address",
        &format!("127.0.0.1:{port}"),
    ])
    .arg("--web.config.file")
    .arg(config)
    .args(extra)
    .env_remove("PROC_PREFIX")
    .env("PORTWARDEN_STATE_DIR", dir);
    Running::start(cmd, port, dir.join(format!("portwarden-{port}.log")))
}

fn node_exporter(config: &Path, dir: &Path) -> Running {
    let port = free_port();
    let mut cmd = Command::new("prometheus-node-exporter");
    cmd.arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--web.config.file={}", config.display()))
        .arg("--collector.disable-defaults");
    Running::start(cmd, port, dir.join(format!("node-exporter-{port}.log")))
}

/// One request through tests/webclient.py.
fn request(port: u16, spec: &Value) -> Value {
    let mut spec = spec.clone();
    spec["port"] = json!(port);
    let out = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/webclient.py"))
        .arg(spec.to_string())
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "webclient: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("webclient JSON")
}

/// The part of an outcome both servers must agree on.
fn outcome(v: &Value) -> Value {
    json!({
        "error": v.get("error"),
        "status": v.get("status"),
        "www_authenticate": v.get("www_authenticate"),
        "headers": v.get("headers"),
        "body_start": v.get("body_start"),
    })
}

fn have_node_exporter() -> bool {
    Command::new("prometheus-node-exporter")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn same_outcomes_as_node_exporter() {
    if !have_node_exporter() {
        cannot_run(
            "prometheus-node-exporter not installed (apt-get install prometheus-node-exporter; .ci/run does)",
        );
        return;
    }
    let pki = Pki::new();
    let dir = TempDir::new("webcompat");
    let hash = bcrypt::hash(PASSWORD, 4).expect("bcrypt");
    let tls = |auth: &str, ca: bool| {
        let mut t = format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
            pki.path("server.pem"),
            pki.path("server.key")
        );
        if !auth.is_empty() {
            t.push_str(&format!("  client_auth_type: {auth}\n"));
        }
        if ca {
            t.push_str(&format!("  client_ca_file: {}\n", pki.path("ca.pem")));
        }
        t
    };
    let users = format!("basic_auth_users:\n  alice: {hash}\n");
    let headers = "http_server_config:\n  headers:\n    X-Frame-Options: deny\n    X-Content-Type-Options: nosniff\n";

    let ca = pki.path("ca.pem");
    let good_cert = json!({"tls": true, "ca": ca, "cert": pki.path("client.pem"), "key": pki.path("client.key")});
    let rogue_cert =
        json!({"tls": true, "ca": ca, "cert": pki.path("rogue.pem"), "key": pki.path("rogue.key")});
    let no_cert = json!({"tls": true, "ca": ca});
    let with = |base: &Value, extra: Value| {
        let mut v = base.clone();
        for (k, x) in extra.as_object().expect("object") {
            v[k] = x.clone();
        }
        v["header"] = json!(["X-Frame-Options", "X-Content-Type-Options"]);
        v
    };
    let right = json!({"user": "alice", "password": PASSWORD});
    let wrong = json!({"user": "alice", "password": "guess"});
    let stranger = json!({"user": "mallory", "password": PASSWORD});
    let plain = json!({"tls": false});

    // (config, [(case, request)])
    let suites: Vec<(String, Vec<(&str, Value)>)> = vec![
        (
            format!(
                "{}{users}{headers}",
                tls("RequireAndVerifyClientCert", true)
            ),
            vec![
                ("verified cert, no auth", with(&good_cert, json!({}))),
                (
                    "verified cert, wrong password",
                    with(&good_cert, wrong.clone()),
                ),
                (
                    "verified cert, right password",
                    with(&good_cert, right.clone()),
                ),
                (
                    "verified cert, unknown user",
                    with(&good_cert, stranger.clone()),
                ),
                (
                    "no client cert, right password",
                    with(&no_cert, right.clone()),
                ),
                (
                    "cert of no known CA, right password",
                    with(&rogue_cert, right.clone()),
                ),
                ("plain HTTP to the TLS port", with(&plain, right.clone())),
            ],
        ),
        (
            tls("RequireAnyClientCert", false),
            vec![
                ("any cert required, none given", with(&no_cert, json!({}))),
                (
                    "any cert required, unverified given",
                    with(&rogue_cert, json!({})),
                ),
            ],
        ),
        (
            tls("VerifyClientCertIfGiven", true),
            vec![
                ("verify if given, none", with(&no_cert, json!({}))),
                ("verify if given, verified", with(&good_cert, json!({}))),
                ("verify if given, unknown CA", with(&rogue_cert, json!({}))),
            ],
        ),
        (
            tls("RequestClientCert", false),
            vec![
                ("requested, none", with(&no_cert, json!({}))),
                ("requested, unverified given", with(&rogue_cert, json!({}))),
            ],
        ),
        (
            format!(
                "{}  min_version: TLS13\n{users}",
                tls("NoClientCert", false)
            ),
            vec![
                (
                    "TLS 1.3 only, client at most 1.2",
                    with(&no_cert, json!({"max_tls": "TLS12"})),
                ),
                (
                    "TLS 1.3 only, right password",
                    with(&no_cert, right.clone()),
                ),
                ("TLS, plain HTTP", with(&plain, json!({}))),
            ],
        ),
        (
            format!("{users}{headers}"),
            vec![
                ("plain HTTP, no auth", with(&plain, json!({}))),
                ("plain HTTP, wrong password", with(&plain, wrong.clone())),
                ("plain HTTP, right password", with(&plain, right.clone())),
                ("TLS to a plain HTTP port", with(&no_cert, right.clone())),
            ],
        ),
    ];
    let mut differences = Vec::new();
    let mut compared = 0;
    for (i, (config, cases)) in suites.iter().enumerate() {
        let file = dir.0.join(format!("web-{i}.yml"));
        std::fs::write(&file, config).expect("write config");
        let go = node_exporter(&file, &dir.0);
        let ours = portwarden(&file, &dir.0, &[]);
        for (case, spec) in cases {
            let theirs = outcome(&request(go.port, spec));
            let mine = outcome(&request(ours.port, spec));
            compared += 1;
            eprintln!("{case}: node_exporter {theirs} / portwarden {mine}");
            if theirs != mine {
                differences.push(format!(
                    "{case}:\n  node_exporter: {theirs}\n  portwarden:    {mine}\n  config:\n{config}\n  portwarden log: {}",
                    ours.log()
                ));
            }
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {compared} outcomes differ:\n{}",
        differences.len(),
        differences.join("\n")
    );
    // The cases mean what they say (both could be wrong the same way).
    let file = dir.0.join("web-0.yml");
    let ours = portwarden(&file, &dir.0, &[]);
    let ok = request(ours.port, &with(&good_cert, right.clone()));
    assert_eq!(ok["status"], 200, "{ok}");
    assert_eq!(ok["headers"]["x-frame-options"], "deny", "{ok}");
    assert_eq!(
        request(ours.port, &with(&good_cert, wrong.clone()))["status"],
        401
    );
    assert_eq!(
        request(ours.port, &with(&no_cert, right.clone()))["error"],
        "tls"
    );
    let http = request(ours.port, &with(&plain, json!({})));
    assert_eq!(http["status"], 400, "{http}");
    // The status page, its API and badges are behind the same TLS and auth.
    for path in [
        "/",
        "/api/v1/ports",
        "/badge/tcp/1.svg",
        "/assets/status.js",
    ] {
        let mut wrong_here = with(&good_cert, wrong.clone());
        wrong_here["path"] = json!(path);
        assert_eq!(request(ours.port, &wrong_here)["status"], 401, "{path}");
        let mut right_here = with(&good_cert, right.clone());
        right_here["path"] = json!(path);
        let answer = request(ours.port, &right_here);
        let expected = if path.starts_with("/badge") { 404 } else { 200 };
        assert_eq!(answer["status"], expected, "{path}: {answer}");
    }
}

#[test]
fn reloads_on_change_and_sighup_and_keeps_the_old_config_when_broken() {
    let pki = Pki::new();
    let dir = TempDir::new("webreload");
    let file = dir.0.join("web.yml");
    let write = |users: &str| {
        let text =
            format!("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n{users}");
        // Replaced whole, as config management does.
        let tmp = dir.0.join("web.yml.tmp");
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, &file).expect("rename");
    };
    for name in ["server.pem", "server.key", "server2.pem", "server2.key"] {
        std::fs::copy(pki.dir.0.join(name), dir.0.join(name)).expect("copy cert");
    }
    let first = bcrypt::hash("first", 4).expect("bcrypt");
    write(&format!("basic_auth_users:\n  alice: {first}\n"));
    let server = portwarden(&file, &dir.0, &[]);
    let ca = pki.path("ca.pem");
    let ask = |password: &str| {
        request(
            server.port,
            &json!({"tls": true, "ca": ca, "user": "alice", "password": password}),
        )
    };
    let wait_until = |what: &str, check: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; log:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    assert_eq!(ask("first")["status"], 200);
    let cert_before = ask("first")["peer_sha256"].clone();

    // A changed file is picked up without a signal.
    let second = bcrypt::hash("second", 4).expect("bcrypt");
    write(&format!("basic_auth_users:\n  alice: {second}\n"));
    wait_until("the new password", &|| ask("second")["status"] == 200);
    assert_eq!(ask("first")["status"], 401);

    // A broken file (unknown key) changes nothing, and says so.
    write(&format!(
        "basic_auth_users:\n  alice: {first}\nbasic_auth_userz: {{}}\n"
    ));
    wait_until("the reload error in the log", &|| {
        server.log().contains("web config not reloaded")
    });
    assert!(
        server.log().contains("basic_auth_userz"),
        "{}",
        server.log()
    );
    assert_eq!(ask("second")["status"], 200);
    assert_eq!(ask("first")["status"], 401);

    // Certificates are reloaded too: rotate the files in place.
    write(&format!("basic_auth_users:\n  alice: {second}\n"));
    std::fs::copy(dir.0.join("server2.pem"), dir.0.join("server.pem")).expect("rotate cert");
    std::fs::copy(dir.0.join("server2.key"), dir.0.join("server.key")).expect("rotate key");
    wait_until("the rotated certificate", &|| {
        let now = ask("second");
        now["status"] == 200 && now["peer_sha256"] != cert_before
    });

    // SIGHUP reloads at once, and does not end the process.
    let reloads = server.log().matches("web config reloaded").count();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(server.child.id() as i32).expect("pid"),
        rustix::process::Signal::HUP,
    )
    .expect("SIGHUP");
    wait_until("a reload on SIGHUP", &|| {
        server.log().matches("web config reloaded").count() > reloads
    });
    assert_eq!(ask("second")["status"], 200);
}

#[test]
fn bad_files_are_refused_at_start_with_status_2() {
    let pki = Pki::new();
    let dir = TempDir::new("webbad");
    let cases = [
        ("tls_server_config:\n  cert_fil: x\n", "cert_fil"),
        (
            "basic_auth_users:\n  alice: plaintext\n",
            "basic_auth_users.alice",
        ),
        (
            "tls_server_config:\n  cert_file: nope.pem\n  key_file: nope.key\n",
            "tls_server_config.cert_file",
        ),
        (
            &format!(
                "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  client_auth_type: Always\n",
                pki.path("server.pem"),
                pki.path("server.key")
            ),
            "client_auth_type",
        ),
        (
            &format!(
                "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
                pki.path("server.pem"),
                pki.path("client.key")
            ),
            "tls_server_config.key_file",
        ),
        (
            "http_server_config:\n  headers:\n    Server: portwarden\n",
            "headers.Server",
        ),
        ("tls_server_config: [\n", "YAML"),
    ];
    for (text, named) in cases {
        let file = dir.0.join("web.yml");
        std::fs::write(&file, text).expect("write");
        let out = Command::new(bin())
            .args(["serve", "--web.listen-address", "127.0.0.1:0"])
            .arg("--web.config.file")
            .arg(&file)
            .env("PORTWARDEN_STATE_DIR", &dir.0)
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {stderr}");
        assert!(
            stderr.contains("--web.config.file") && stderr.contains(named),
            "{text}: message does not name {named}: {stderr}"
        );
    }
}
