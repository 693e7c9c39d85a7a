//! The Windows build, run under Debian's wine: cross-built for
//! `x86_64-pc-windows-gnu` (or `PORTWARDEN_WINDOWS_EXE`, the release
//! build `.ci/run` zips), then `serve` (metrics, health, the status page),
//! `ls`, `check` and `why`, and the Windows service through wine's service
//! control manager: installed (its arguments checked), started by `sc
//! start` and serving, stopped by `sc stop` within its wait hint, started
//! unasked at (wine's) boot when automatic, stopped and removed by
//! `service uninstall`.
//!
//! The tests take turns in one wine prefix.
//!
//! Wine lists the host's sockets in its IP Helper tables (from the Linux
//! kernel's) but names no owner of a Linux process (pid 0): owner mapping
//! is tested on recorded tables by `discover::tables`'s unit tests.
//!
//! Wine 8 lacks `ProcessPrng` (bcryptprimitives.dll), which Rust's standard
//! library calls for random numbers: a DLL exporting it, forwarding to
//! `SystemFunction036` (RtlGenRandom), is built here with mingw and put
//! beside the executable.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{Exporter, cannot_run, series_value};

const TARGET: &str = "x86_64-pc-windows-gnu";

const SHIM: &str = r#"
#include <windows.h>
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG n = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, n)) return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
"#;

/// The executable under wine, with its prefix.
struct Wine {
    exe: PathBuf,
    prefix: PathBuf,
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

/// Runs `cmd` with its output to files, not pipes: the first wine program
/// after a quiet spell starts wine's service manager, which hands its
/// standard output and error down to every service it starts — a pipe
/// closed when the test has read it would end those services at their
/// next write (by SIGPIPE, without a word in their log).
fn output(cmd: &mut Command) -> std::io::Result<Output> {
    let dir = common::TempDir::new("wine-output");
    let (out, err) = (dir.0.join("stdout"), dir.0.join("stderr"));
    let status = cmd
        .stdout(std::fs::File::create(&out)?)
        .stderr(std::fs::File::create(&err)?)
        .status()?;
    Ok(Output {
        status,
        stdout: std::fs::read(&out)?,
        stderr: std::fs::read(&err)?,
    })
}

fn run_ok(cmd: &mut Command, what: &str) {
    let out = output(cmd).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds (once) what the tests run; `None` when this machine cannot.
fn wine() -> Option<&'static Wine> {
    static WINE: OnceLock<Option<Wine>> = OnceLock::new();
    WINE.get_or_init(|| {
        for tool in ["wine", "x86_64-w64-mingw32-gcc"] {
            if !on_path(tool) {
                cannot_run(&format!(
                    "{tool} is missing (apt-get install wine wine64 gcc-mingw-w64-x86-64)"
                ));
                return None;
            }
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = root.join("target/windows/wine");
        std::fs::create_dir_all(&dir).expect("mkdir target/windows/wine");
        let built = match std::env::var_os("PORTWARDEN_WINDOWS_EXE") {
            Some(exe) => PathBuf::from(exe),
            None => {
                let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
                let out = Command::new(cargo)
                    .args([
                        "build",
                        "--locked",
                        "--bin",
                        "portwarden",
                        "--target",
                        TARGET,
                    ])
                    .env("CARGO_TARGET_DIR", root.join("target/windows"))
                    // No debug info: a fifth of the size to copy and load.
                    .env("CARGO_PROFILE_DEV_DEBUG", "false")
                    .current_dir(root)
                    .output()
                    .expect("run cargo build");
                if !out.status.success() {
                    let err = String::from_utf8_lossy(&out.stderr);
                    if err.contains("target may not be installed") {
                        cannot_run(&format!("rustup target add {TARGET}"));
                        return None;
                    }
                    panic!("cross-build failed:\n{err}");
                }
                root.join(format!("target/windows/{TARGET}/debug/portwarden.exe"))
            }
        };
        let exe = dir.join("portwarden.exe");
        std::fs::copy(&built, &exe).unwrap_or_else(|e| panic!("copy {}: {e}", built.display()));
        let source = dir.join("bcryptprimitives.c");
        std::fs::write(&source, SHIM).expect("write the shim");
        run_ok(
            Command::new("x86_64-w64-mingw32-gcc")
                .args(["-shared", "-O2", "-o"])
                .arg(dir.join("bcryptprimitives.dll"))
                .arg(&source)
                .arg("-ladvapi32"),
            "building bcryptprimitives.dll",
        );
        let prefix = root.join("target/windows/prefix");
        let wine = Wine { exe, prefix };
        wine.boot();
        Some(wine)
    })
    .as_ref()
}

impl Wine {
    /// Starts wine afresh, as a machine boots: any server of the prefix
    /// and every program in it ended, then one server kept a minute after
    /// its last program exits (wine's default, 3 s, would end the services
    /// between two commands of a test), then its first program — which
    /// makes (or updates) the prefix and starts wine's service manager,
    /// which starts the automatic services. (`wineboot -i` here started a
    /// second service manager, and the two held the service database
    /// locked: `sc start` failed with 1055.)
    fn boot(&self) {
        for arg in ["-k", "-w", "-p60"] {
            // -k and -w when no server runs fail; that is as good.
            let _ = Command::new("wineserver")
                .arg(arg)
                .env("WINEPREFIX", &self.prefix)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        run_ok(&mut self.cmd(&["--version"]), "portwarden.exe --version");
    }

    /// A wine program (`sc`, `wineboot`) in the prefix.
    fn tool(&self, name: &str) -> Command {
        let mut cmd = Command::new("wine");
        cmd.arg(name)
            .env("WINEPREFIX", &self.prefix)
            .env("WINEDEBUG", "-all")
            .env_remove("DISPLAY")
            .stdin(Stdio::null());
        cmd
    }

    /// `portwarden.exe args…` under wine.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.tool(&self.exe.to_string_lossy());
        cmd.args(args)
            .env_remove("PROC_PREFIX")
            .env_remove("EXCLUDED_PROCESS_NAMES");
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        output(&mut self.cmd(args)).unwrap_or_else(|e| panic!("wine portwarden.exe {args:?}: {e}"))
    }

    /// `sc …` (wine's): its standard output.
    fn sc(&self, args: &[&str]) -> (bool, String) {
        let out = output(self.tool("sc").args(args)).expect("wine sc");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }
}

/// The status code of a response's head.
fn status(head: &str) -> Option<&str> {
    head.split(' ').nth(1)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A port nothing listens on now.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn listening() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = l.local_addr().expect("addr").port();
    (l, port)
}

#[test]
fn serve_answers_metrics_health_and_the_status_page() {
    let _serial = common::serial();
    let Some(wine) = wine() else { return };
    let (_listener, port) = listening();
    let exporter = Exporter::start_cmd(wine.cmd(&["serve"]), &[]);
    let text = exporter.wait_for(60, "the listener alive", |t| {
        series_value(t, "node_tcp_port_alive", port) == Some(1.0)
    });
    assert!(
        series_value(&text, "node_tcp_port_response_seconds", port).is_some_and(|s| s > 0.0),
        "{text}"
    );
    // Our own figures, from Windows's calls.
    let start = text
        .lines()
        .find_map(|l| l.strip_prefix("process_start_time_seconds "))
        .and_then(|v| v.parse::<f64>().ok())
        .expect("process_start_time_seconds");
    assert!(start > 1.6e9, "{start}");
    let (head, _) = exporter.get("/-/healthy").expect("healthy");
    assert_eq!(status(&head), Some("200"), "{head}");
    let (head, body) = exporter.get("/").expect("status page");
    assert_eq!(status(&head), Some("200"), "{head}");
    assert!(String::from_utf8_lossy(&body).contains("portwarden"));
    let (head, body) = exporter.get("/api/v1/ports").expect("ports");
    assert_eq!(status(&head), Some("200"), "{head}");
    let ports: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let found = ports.to_string().contains(&format!("\"port\":{port}"));
    assert!(found, "{ports}");
}

#[test]
fn ls_lists_the_listener_and_check_and_why_answer() {
    let _serial = common::serial();
    let Some(wine) = wine() else { return };
    let (_listener, port) = listening();
    let out = wine.run(&["ls", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ls --json");
    let entry = list
        .as_array()
        .expect("array")
        .iter()
        .find(|e| e["port"] == port && e["proto"] == "tcp")
        .unwrap_or_else(|| panic!("{port} not listed: {list}"));
    assert_eq!(entry["address"], "127.0.0.1");
    assert_eq!(entry["netns"], "host");
    assert_eq!(entry["health"], "ok");
    // Wine names no owner of a Linux process, and says so.
    assert_eq!(
        entry["owner_unknown_reason"],
        "the OS names no owning process (pid 0)"
    );

    let target = format!("127.0.0.1:{port}");
    let out = wine.run(&["check", &target]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let closed = format!("127.0.0.1:{}", closed_port());
    let out = wine.run(&["check", &closed]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("refused: nothing listens on {closed}")),
        "{}",
        text(&out)
    );
    let out = wine.run(&["check", "nonsense:"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    let out = wine.run(&["why", &target]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).starts_with(&format!("{port}/tcp: healthy")),
        "{}",
        text(&out)
    );
    let out = wine.run(&["why", &closed]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("nothing listens"), "{}", text(&out));
}

/// Removes the test's service whatever happens.
struct Installed<'a>(&'a Wine, String);

impl Drop for Installed<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(&["service", "uninstall", "--name", &self.1]);
    }
}

/// `service install --name NAME [--start START] -- --web.listen-address
/// WEB EXTRA…` on a free loopback port WEB, which must succeed: the guard
/// that removes it, WEB, and what the install printed.
fn install<'a>(
    wine: &'a Wine,
    name: &str,
    start: Option<&str>,
    extra: &[&str],
) -> (Installed<'a>, String, String) {
    let web = format!("127.0.0.1:{}", closed_port());
    let mut args = vec!["service", "install", "--name", name];
    if let Some(start) = start {
        args.extend(["--start", start]);
    }
    args.extend(["--", "--web.listen-address", &web]);
    args.extend(extra);
    let out = wine.run(&args);
    assert!(out.status.success(), "{}", text(&out));
    (Installed(wine, name.to_string()), web, text(&out))
}

fn wait_state(wine: &Wine, name: &str, state: &str, within: Duration) -> String {
    let started = Instant::now();
    loop {
        let (_, out) = wine.sc(&["query", name]);
        if out.contains(state) {
            return out;
        }
        assert!(
            started.elapsed() < within,
            "{name} not {state} within {within:?}: {out}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What a service of the prefix logged (`portwarden.log` in its state
/// directory, wherever wine's `%ProgramData%` puts it) from its last
/// start serving on `web`.
fn service_log(wine: &Wine, web: &str) -> String {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&path, found);
            } else if path.file_name().is_some_and(|n| n == "portwarden.log") {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(&wine.prefix.join("drive_c"), &mut found);
    let marker = format!("address={web} ");
    for path in found {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if let Some(at) = text.rfind(&marker) {
            let start = text[..at].rfind('\n').map_or(0, |n| n + 1);
            return text[start..].to_string();
        }
    }
    panic!(
        "no portwarden.log under {} says {marker}",
        wine.prefix.display()
    );
}

/// The scrape of a service's exporter on `web`, once it answers with the
/// listener on `port` alive: within 30 s, half the default interval (a
/// service whose first look failed looks again within seconds).
fn scrape_until_alive(web: &str, port: u16) -> String {
    let addr = web.parse().expect("address");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = common::http_get(addr, "/metrics", &[])
            .map(|(_, body)| String::from_utf8_lossy(&body).into_owned())
            .unwrap_or_default();
        if series_value(&text, "node_tcp_port_alive", port) == Some(1.0) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "the service on {web} did not report {port} alive; last scrape:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn service_install_is_checked_and_uninstall_removes_it() {
    let _serial = common::serial();
    let Some(wine) = wine() else { return };
    let name = format!("portwarden-test-{}", std::process::id());
    // Arguments the exporter would refuse are refused at install.
    let out = wine.run(&[
        "service",
        "install",
        "--name",
        &name,
        "--",
        "--no-such-flag",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let (ok, query) = wine.sc(&["query", &name]);
    assert!(!ok || !query.contains("STATE"), "installed anyway: {query}");

    let (_installed, web, said) = install(wine, &name, Some("manual"), &["--log.level", "debug"]);
    assert!(said.contains("started when asked"), "{said}");
    assert!(
        said.contains(&format!(
            "service run --name {name} --web.listen-address {web} --log.level debug"
        )),
        "{said}"
    );
    let (_, query) = wine.sc(&["query", &name]);
    assert!(query.contains("STOPPED"), "{query}");

    let out = wine.run(&["service", "uninstall", "--name", &name]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&format!("removed service {name}")));
    let (ok, query) = wine.sc(&["query", &name]);
    assert!(!ok || !query.contains("STATE"), "{query}");
    // A service that is not there: a clear error, exit 1.
    let out = wine.run(&["service", "uninstall", "--name", &name]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("does not exist"), "{}", text(&out));
}

#[test]
fn started_by_the_service_manager_it_serves_and_stops_within_its_wait_hint() {
    let _serial = common::serial();
    let Some(wine) = wine() else { return };
    let name = format!("portwarden-run-{}", std::process::id());
    let (_installed, web, _) = install(wine, &name, Some("manual"), &[]);
    let (_listener, port) = listening();

    // Started as Windows starts a service: by the service manager, which
    // runs the kept command line and waits for the service to say RUNNING.
    let (ok, started) = wine.sc(&["start", &name]);
    assert!(ok, "sc start {name}: {started}");
    wait_state(wine, &name, "RUNNING", Duration::from_secs(30));
    let metrics = scrape_until_alive(&web, port);
    assert!(
        series_value(&metrics, "node_tcp_port_response_seconds", port).is_some_and(|s| s > 0.0),
        "{metrics}"
    );
    let (head, _) = common::http_get(web.parse().expect("address"), "/-/healthy", &[])
        .expect("the service's /-/healthy");
    assert_eq!(status(&head), Some("200"), "{head}");

    // Stopped as Windows stops it: STOP_PENDING with the wait hint it
    // promised (10 s), then STOPPED within it, having shut down cleanly.
    let asked = Instant::now();
    let (ok, stopping) = wine.sc(&["stop", &name]);
    assert!(ok, "sc stop {name}: {stopping}");
    assert!(
        stopping.contains("STOP_PENDING") && stopping.contains("WAIT_HINT          : 0x2710"),
        "{stopping}"
    );
    let stopped = wait_state(wine, &name, "STOPPED", Duration::from_secs(10));
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(stopped.contains("WIN32_EXIT_CODE    : 0 "), "{stopped}");
    assert!(
        common::http_get(web.parse().expect("address"), "/-/healthy", &[]).is_err(),
        "still serving on {web} once STOPPED"
    );
    let log = service_log(wine, &web);
    assert!(log.contains("INFO shutting down"), "{log}");
    eprintln!("sc stop → STOPPED in {took:?}");
}

#[test]
fn installed_as_automatic_the_service_manager_starts_it_unasked() {
    let _serial = common::serial();
    let Some(wine) = wine() else { return };
    let name = format!("portwarden-auto-{}", std::process::id());
    // The default start type.
    let (_installed, web, said) = install(wine, &name, None, &[]);
    assert!(said.contains("started at boot"), "{said}");
    let (_listener, port) = listening();
    // Not started by the install: it starts at boot.
    let (_, query) = wine.sc(&["query", &name]);
    assert!(query.contains("STOPPED"), "{query}");
    // Wine's service manager, as it starts, starts the automatic services,
    // as Windows's does at boot: RUNNING with no `sc start`, and serving
    // (its first look at the socket tables may come before wine serves
    // them: it looks again a second later).
    wine.boot();
    wait_state(wine, &name, "RUNNING", Duration::from_secs(30));
    scrape_until_alive(&web, port);
    // Uninstalled while running: stopped within the wait hint, then gone.
    let out = wine.run(&["service", "uninstall", "--name", &name]);
    assert!(out.status.success(), "{}", text(&out));
    let (ok, query) = wine.sc(&["query", &name]);
    assert!(!ok || !query.contains("STATE"), "{query}");
    assert!(
        common::http_get(web.parse().expect("address"), "/-/healthy", &[]).is_err(),
        "still serving on {web} once removed"
    );
}
