//! Helpers shared by the end-to-end tests: real child processes holding real
//! sockets on loopback, and the real `portwarden` binary.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};

use serde_json::Value;

/// The binary under test: this build's, or `PORTWARDEN_BIN` (`.ci/run`
/// points it at the static build for tests/smoke.rs).
pub fn bin() -> PathBuf {
    match std::env::var_os("PORTWARDEN_BIN") {
        Some(path) => std::fs::canonicalize(&path)
            .unwrap_or_else(|e| panic!("PORTWARDEN_BIN={}: {e}", path.to_string_lossy())),
        None => PathBuf::from(env!("CARGO_BIN_EXE_portwarden")),
    }
}

/// The project's busy-host simulator (`examples/hostsim.rs`), built beside
/// the tests: `cargo test` builds examples; when only some tests were
/// built, it is built here.
pub fn hostsim() -> PathBuf {
    static BUILT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _once = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    // target/<profile>/deps/<test> → target/<profile>/examples/hostsim
    let exe = std::env::current_exe().expect("test executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let path = profile_dir.join("examples/hostsim");
    if !path.exists() {
        let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cargo.args(["build", "--example", "hostsim"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cargo.arg("--release");
        }
        let status = cargo
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build --example hostsim");
        assert!(status.success(), "cargo build --example hostsim failed");
    }
    path
}

/// A test that cannot run here: under CI (`CI` set, as `.ci/run` runs)
/// that is a failure with the reason; elsewhere it says why it skips.
pub fn cannot_run(why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("cannot run under CI: {why}");
    }
    eprintln!("skipped: {why}");
}

/// A running [`hostsim`] with `args`, its sockets as its ready file lists
/// them; stopped on drop.
pub struct Sim {
    child: Child,
    pub sockets: Vec<Value>,
    _dir: TempDir,
}

impl Sim {
    pub fn start(args: &[&str]) -> Sim {
        let dir = TempDir::new("sim");
        let ready = dir.0.join("ready.json");
        let child = Command::new(hostsim())
            .args(args)
            .arg("--ready-file")
            .arg(&ready)
            .spawn()
            .expect("start hostsim");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while !ready.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "hostsim did not get ready"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let report: Value =
            serde_json::from_slice(&std::fs::read(&ready).expect("ready file")).expect("json");
        let sockets = report["sockets"].as_array().expect("sockets").clone();
        Sim {
            child,
            sockets,
            _dir: dir,
        }
    }

    /// Every socket's port, in the ready file's order.
    pub fn ports(&self) -> Vec<u16> {
        self.sockets
            .iter()
            .map(|s| s["port"].as_u64().expect("port") as u16)
            .collect()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// Tests whose exporters check every port on the host run one at a time
/// within a test binary: they would see (and check) each other's servers.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A Python child that opens the sockets it is told to, reports them as one
/// JSON line, and lives until its stdin closes (so a failed test leaves no
/// process behind). Commands on stdin: `close` (close this process's copies
/// of its sockets), `exit`.
pub const SOCKET_HOLDER: &str = r#"
import json, os, socket, sys, time
spec = json.loads(sys.argv[1])
if spec.get("comm_hex"):
    import ctypes
    # prctl(PR_SET_NAME): any bytes, as any process may name itself.
    ctypes.CDLL(None).prctl(15, ctypes.c_char_p(bytes.fromhex(spec["comm_hex"])), 0, 0, 0)
socks, info = [], []
for s in spec.get("sockets", []):
    fam = socket.AF_INET6 if ":" in s["addr"] else socket.AF_INET
    kind = socket.SOCK_STREAM if s["proto"] == "tcp" else socket.SOCK_DGRAM
    sk = socket.socket(fam, kind)
    if fam == socket.AF_INET6:
        sk.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1 if s.get("v6only", True) else 0)
    if s.get("reuseport"):
        sk.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    port = s.get("port", 0)
    sk.bind((s["addr"], info[-1]["port"] if port == "previous" else port))
    if kind == socket.SOCK_STREAM:
        sk.listen(s.get("backlog", 16))
    if s.get("connect"):
        sk.connect(("127.0.0.1", 9))
    socks.append(sk)
    info.append({"proto": s["proto"], "addr": s["addr"], "port": sk.getsockname()[1], "inode": os.fstat(sk.fileno()).st_ino})
children = []
for _ in range(spec.get("fork", 0)):
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        # Not stdin: that pipe is the parent's. Live as long as the parent.
        while os.getppid() == parent:
            time.sleep(0.1)
        os._exit(0)
    children.append(pid)
print(json.dumps({"pid": os.getpid(), "children": children, "sockets": info}), flush=True)
for line in sys.stdin:
    if line.strip() == "close":
        for sk in socks:
            sk.close()
        print("closed", flush=True)
    elif line.strip() == "exit":
        break
"#;

/// A Python child serving TCP on loopback in a given `mode`, reporting its
/// port as JSON. Modes: `http` (answers every request), `silent` (accepts,
/// never writes), `banner` (greets first, like SSH), `redis` (replies
/// `-ERR`, like Redis), `drop-first` (closes its first connection without a
/// word once the request is in, then serves HTTP: a busy server with a short
/// read timeout), `stall-first` (answers its first request after 3 s, then
/// serves HTTP at once). On stdin: `hang` (stop answering), `report` (print
/// every byte received so far, as a JSON list of latin-1 strings).
pub const SERVER: &str = r#"
import json, socket, sys, threading
mode = sys.argv[1]
port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(64)
received, hang, lock = [], threading.Event(), threading.Lock()
def serve(c):
    c.settimeout(5)
    with lock:
        received.append(None)
    try:
        if mode == "banner":
            c.sendall(b"SSH-2.0-OpenSSH_9.2 fake\r\n")
        data = b""
        if mode != "silent":
            try:
                data = c.recv(4096)
            except OSError:
                pass
        with lock:
            first = bool(data) and not any(received)
            received[received.index(None)] = data.decode("latin-1")
        if first and mode == "drop-first":
            pass
        elif first and mode == "stall-first":
            threading.Event().wait(3)
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        elif hang.is_set() or mode == "silent":
            threading.Event().wait(30)
        elif mode in ("http", "drop-first", "stall-first"):
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        elif mode == "redis":
            c.sendall(b"-ERR unknown command\r\n")
    except OSError:
        pass
    finally:
        c.close()
def accept():
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
threading.Thread(target=accept, daemon=True).start()
print(json.dumps({"port": s.getsockname()[1]}), flush=True)
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "hang":
        hang.set()
        print("ok", flush=True)
    elif cmd == "report":
        with lock:
            print(json.dumps([r or "" for r in received]), flush=True)
"#;

/// A running [`SERVER`].
pub struct Server {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
    pub port: u16,
}

impl Server {
    pub fn start(mode: &str) -> Server {
        Server::start_on(mode, 0)
    }

    pub fn start_on(mode: &str, port: u16) -> Server {
        let mut child = Command::new("python3")
            .args(["-c", SERVER, mode, &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python3 server");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("server reports");
        let report: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("server said {line:?}: {e}"));
        Server {
            port: report["port"].as_u64().expect("port") as u16,
            child,
            stdin,
            stdout,
        }
    }

    fn ask(&mut self, cmd: &str) -> String {
        writeln!(self.stdin, "{cmd}").expect("send");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("answer");
        line
    }

    /// Stops answering requests (keeps accepting).
    pub fn hang(&mut self) {
        assert_eq!(self.ask("hang").trim(), "ok");
    }

    /// Every payload received so far, one per connection.
    pub fn received(&mut self) -> Vec<String> {
        serde_json::from_str(&self.ask("report")).expect("report is JSON")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `portwarden serve` on a free loopback port.
pub struct Exporter {
    child: Child,
    pub addr: std::net::SocketAddr,
    /// The network namespace (`ip netns` name) it runs in, if not ours.
    netns: Option<String>,
    /// Its own state directory, unless the test gave one.
    _state: Option<TempDir>,
}

impl Exporter {
    /// Starts the exporter with `env` on top of fast test settings.
    pub fn start(env: &[(&str, &str)]) -> Exporter {
        Exporter::launch(Command::new(bin()), None, env)
    }

    /// Starts it with `args` after `serve` too.
    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> Exporter {
        let mut cmd = Command::new(bin());
        cmd.arg("serve").args(args);
        Exporter::launch(cmd, None, env)
    }

    /// Starts it inside the `ip netns` namespace `netns`; scrapes enter it too.
    pub fn start_in(netns: &str, env: &[(&str, &str)]) -> Exporter {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns]).arg(bin());
        Exporter::launch(cmd, Some(netns.to_string()), env)
    }

    /// Starts `cmd` (which ends by running the binary, after a wrapper such
    /// as `setpriv`) as the exporter.
    pub fn start_cmd(cmd: Command, env: &[(&str, &str)]) -> Exporter {
        Exporter::launch(cmd, None, env)
    }

    /// Starts `cmd` (`ip netns exec <netns> …`, ending by the binary) as
    /// the exporter inside `netns`; scrapes enter it too.
    pub fn start_cmd_in(cmd: Command, netns: &str, env: &[(&str, &str)]) -> Exporter {
        Exporter::launch(cmd, Some(netns.to_string()), env)
    }

    /// Starts the exporter with `args`, its standard output a pipe given
    /// back (line by line).
    pub fn start_piped(
        args: &[&str],
        env: &[(&str, &str)],
    ) -> (Exporter, BufReader<std::process::ChildStdout>) {
        let mut cmd = Command::new(bin());
        cmd.arg("serve").args(args);
        let mut exporter = Exporter::launch_to(cmd, None, env, Stdio::piped());
        let out = exporter.child.stdout.take().expect("piped stdout");
        (exporter, BufReader::new(out))
    }

    fn launch(cmd: Command, netns: Option<String>, env: &[(&str, &str)]) -> Exporter {
        Exporter::launch_to(cmd, netns, env, Stdio::null())
    }

    fn launch_to(
        mut cmd: Command,
        netns: Option<String>,
        env: &[(&str, &str)],
        stdout: Stdio,
    ) -> Exporter {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let has_serve = cmd.get_args().any(|a| a == "serve");
        if !has_serve {
            cmd.arg("serve");
        }
        cmd.args(["--web.listen-address", &addr.to_string()])
            .env_remove("PROC_PREFIX")
            .env_remove("EXCLUDED_PROCESS_NAMES")
            .env("PORT_STATUS_INTERVAL", "500ms")
            .env("PROCESS_ALIVE_STATUS_INTERVAL", "500ms")
            .env("PORT_CHECK_TIMEOUT", "500ms")
            .stdout(stdout)
            .stderr(Stdio::null());
        // Never the machine's /var/lib/portwarden.
        let state = (!env.iter().any(|(k, _)| *k == "PORTWARDEN_STATE_DIR")).then(|| {
            let dir = TempDir::new("state");
            cmd.env("PORTWARDEN_STATE_DIR", &dir.0);
            dir
        });
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start portwarden serve");
        let exporter = Exporter {
            child,
            addr,
            netns,
            _state: state,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while exporter.get("/-/healthy").is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "exporter did not come up on {addr}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        exporter
    }

    /// A GET from the exporter's namespace.
    pub fn get(&self, path: &str) -> std::io::Result<(String, Vec<u8>)> {
        match &self.netns {
            None => http_get(self.addr, path, &[]),
            Some(ns) => in_netns(ns, || http_get(self.addr, path, &[])),
        }
    }

    /// The text exposition.
    pub fn scrape(&self) -> String {
        let (_, body) = self.get("/metrics").expect("scrape");
        String::from_utf8(body).expect("utf-8 exposition")
    }

    /// Scrapes until `check` holds, up to `seconds`; returns that scrape.
    pub fn wait_for(&self, seconds: u64, what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
        loop {
            let text = self.scrape();
            if check(&text) {
                return text;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}; last scrape:\n{text}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Waits until `n` more rounds of checks of `kind` (`tcp`, `http`) have
    /// ended, up to `seconds`: evidence that what a test waits *not* to
    /// see had its chances to happen.
    pub fn wait_rounds(&self, kind: &str, n: usize, seconds: u64) -> String {
        let key = format!("portwarden_last_probe_round_timestamp_seconds{{kind=\"{kind}\"}}");
        let stamp = |t: &str| {
            t.lines()
                .find_map(|l| l.strip_prefix(key.as_str()))
                .map(|v| v.trim().to_string())
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
        let mut last = stamp(&self.scrape());
        let mut seen = 0;
        loop {
            let text = self.scrape();
            let now = stamp(&text);
            if now.is_some() && now != last {
                seen += 1;
                last = now;
                if seen >= n {
                    return text;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "only {seen} of {n} {kind} rounds in {seconds} s; last scrape:\n{text}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status, if it has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.0 GET on loopback: (head, body).
pub fn http_get(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(String, Vec<u8>)> {
    use std::io::Read;
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut request = format!("GET {path} HTTP/1.0\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    Ok((head, raw[split + 4..].to_vec()))
}

/// The value of `metric` for `port` in an exposition, if the series exists.
pub fn series_value(text: &str, metric: &str, port: u16) -> Option<f64> {
    let needle = format!("port=\"{port}\"");
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) && l.contains(&needle))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Spawns `cmd`, retrying while its executable is "busy": a copy made by
/// `python_named` may still be open for writing in a child another test
/// thread forked meanwhile (it closes at that child's exec).
pub fn spawn_retrying(cmd: &mut Command) -> std::io::Result<Child> {
    const ETXTBSY: i32 = 26;
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(ETXTBSY) && tries < 100 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// A running socket holder.
pub struct Holder {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<std::process::ChildStdout>,
    pub pid: u32,
    pub children: Vec<u32>,
    pub sockets: Vec<Value>,
}

impl Holder {
    /// Starts `python3` (or `exe`, a copy of it under another name) with a
    /// socket spec such as `{"sockets":[{"proto":"tcp","addr":"127.0.0.1"}]}`.
    pub fn start(spec: &Value) -> Holder {
        Holder::start_as(Path::new("python3"), spec)
    }

    pub fn start_as(exe: &Path, spec: &Value) -> Holder {
        Holder::spawn(Command::new(exe), spec)
    }

    /// Starts `python3` inside the network namespace `netns` (`ip netns`).
    pub fn start_in(netns: &str, spec: &Value) -> Holder {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns, "python3"]);
        Holder::spawn(cmd, spec)
    }

    /// Starts the holder with `cmd`, a command that ends by running
    /// `python3` (with a wrapper such as `nsenter` before it).
    pub fn spawn(mut cmd: Command, spec: &Value) -> Holder {
        cmd.arg("-c")
            .arg(SOCKET_HOLDER)
            .arg(spec.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child =
            spawn_retrying(&mut cmd).unwrap_or_else(|e| panic!("start a socket holder: {e}"));
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("holder reports");
        let report: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("holder said {line:?}: {e}"));
        Holder {
            pid: report["pid"].as_u64().expect("pid") as u32,
            children: report["children"]
                .as_array()
                .expect("children")
                .iter()
                .map(|c| c.as_u64().expect("child pid") as u32)
                .collect(),
            sockets: report["sockets"].as_array().expect("sockets").clone(),
            child,
            stdin,
            stdout,
        }
    }

    pub fn port(&self, i: usize) -> u16 {
        self.sockets[i]["port"].as_u64().expect("port") as u16
    }

    pub fn inode(&self, i: usize) -> u64 {
        self.sockets[i]["inode"].as_u64().expect("inode")
    }

    /// Closes the main process's copies of its sockets (children keep theirs).
    pub fn close_sockets(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "close").expect("send close");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("ack");
        assert_eq!(line.trim(), "closed");
    }

    /// Ends the holder and its children and waits for them.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
        for &pid in &self.children {
            // The children exit when their parent does; make sure.
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// Runs the binary with `args` (and extra env), returning its output.
pub fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env_remove("PROC_PREFIX")
        .env_remove("EXCLUDED_PROCESS_NAMES")
        .env_remove("PORTWARDEN_STATE_DIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run portwarden")
}

/// `portwarden ls --json <args>`, parsed; panics on failure.
pub fn ls_json(args: &[&str]) -> Vec<Value> {
    let mut all = vec!["ls", "--json"];
    all.extend_from_slice(args);
    let out = run(&all, &[]);
    assert!(
        out.status.success(),
        "ls failed: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("ls --json prints JSON")
}

/// The entries of an `ls --json` listing for one port.
pub fn entries_for(list: &[Value], proto: &str, port: u16) -> Vec<Value> {
    list.iter()
        .filter(|e| e["proto"] == proto && e["port"].as_u64() == Some(u64::from(port)))
        .cloned()
        .collect()
}

/// The entry of an `ls --json` listing for one socket.
pub fn entry_for_inode(list: &[Value], inode: u64) -> Option<Value> {
    list.iter()
        .find(|e| e["inode"].as_u64() == Some(inode))
        .cloned()
}

/// pids of an entry's owners, primary first.
pub fn owner_pids(entry: &Value) -> Vec<u32> {
    entry["owners"]
        .as_array()
        .expect("owners")
        .iter()
        .map(|o| o["pid"].as_u64().expect("pid") as u32)
        .collect()
}

/// A copy of the Python interpreter under another file name, so that
/// `/proc/<pid>/exe` names it.
pub fn python_named(dir: &Path, name: &str) -> PathBuf {
    // `python3` on PATH may be a wrapper script (pyenv): ask for the binary.
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 runs");
    let real =
        std::fs::canonicalize(String::from_utf8_lossy(&out.stdout).trim()).expect("python3 path");
    let target = dir.join(name);
    std::fs::copy(&real, &target).expect("copy python3");
    target
}

/// A holder of one loopback TCP listener, running as a copy of Python named
/// `name`; returns the copy's path too.
pub fn listener_named(dir: &Path, name: &str) -> (PathBuf, Holder) {
    let exe = python_named(dir, name);
    let holder = Holder::start_as(
        &exe,
        &serde_json::json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1"}]}),
    );
    (exe, holder)
}

pub fn which(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").expect("PATH");
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not on PATH"))
}

/// A network namespace made for one test (`ip netns add`, loopback up),
/// deleted on drop. Needs root.
pub struct TestNetns(pub String);

impl TestNetns {
    pub fn new(tag: &str) -> TestNetns {
        let name = format!("pw-{tag}-{}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success())
            && Command::new("ip")
                .args(["netns", "exec", &name, "ip", "link", "set", "lo", "up"])
                .status()
                .is_ok_and(|s| s.success());
        assert!(ok, "could not create network namespace {name}");
        TestNetns(name)
    }

    /// The namespace's inode, as portwarden labels it (`netns:<inode>`).
    pub fn label(&self) -> String {
        let meta = std::fs::metadata(format!("/run/netns/{}", self.0)).expect("bind mount");
        format!("netns:{}", std::os::unix::fs::MetadataExt::ino(&meta))
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// `setpriv` running the binary as `nobody` with exactly `caps` (names as
/// setpriv spells them, e.g. `sys_ptrace`): ambient, inheritable and
/// bounding set all limited to them.
pub fn as_nobody_with(caps: &[&str]) -> Command {
    let plus: Vec<String> = caps.iter().map(|c| format!("+{c}")).collect();
    let list = plus.join(",");
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
    if caps.is_empty() {
        cmd.arg("--bounding-set=-all");
    } else {
        cmd.arg(format!("--inh-caps=-all,{list}"))
            .arg(format!("--ambient-caps=-all,{list}"))
            .arg(format!("--bounding-set=-all,{list}"));
    }
    cmd.arg("--").arg(bin());
    cmd
}

/// Starts a non-blocking connect to `port` on 127.0.0.1 from `source` (a
/// loopback address); the handshake completes in the kernel whether or not
/// the listener ever accepts. The connection lives as long as the fd.
pub fn connect_from(source: &str, port: u16) -> std::os::fd::OwnedFd {
    use rustix::net::{AddressFamily, SocketAddrV4, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::INET,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )
    .expect("socket");
    let src: std::net::Ipv4Addr = source.parse().expect("source");
    rustix::net::bind(&fd, &SocketAddrV4::new(src, 0)).expect("bind source");
    let dst = SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, port);
    match rustix::net::connect(&fd, &dst) {
        Ok(()) | Err(rustix::io::Errno::INPROGRESS) => fd,
        Err(e) => panic!("connect: {e}"),
    }
}

/// Runs `f` on a thread that entered the `ip netns` namespace `name`.
pub fn in_netns<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let ns = std::fs::File::open(format!("/run/netns/{name}")).expect("open netns");
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&ns),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .expect("setns");
            f()
        })
        .join()
        .expect("netns thread")
    })
}

/// A PID namespace of the test's with its own proc mounted in a temporary
/// directory: PID 1 there is a process of ours in the host's network
/// namespace, as the host's /proc mounted at `/host/proc` is to a
/// container. Processes started with [`ProcView::command`] run inside it.
/// Needs root.
pub struct ProcView {
    unshare: Child,
    /// PID 1 of the view, as our own /proc knows it.
    init: u32,
    pub proc: PathBuf,
    dir: TempDir,
}

impl ProcView {
    pub fn new() -> ProcView {
        let dir = TempDir::new("procview");
        let proc = dir.0.join("proc");
        std::fs::create_dir(&proc).expect("mkdir proc");
        let mut unshare = Command::new("unshare")
            .args(["--pid", "--fork", "--kill-child", "sh", "-c"])
            .arg(r#"mount -t proc proc "$0" && echo ready && exec sleep 3600"#)
            .arg(&proc)
            .stdout(Stdio::piped())
            .spawn()
            .expect("unshare");
        let mut line = String::new();
        BufReader::new(unshare.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("ready");
        assert_eq!(line.trim(), "ready", "the proc view was not mounted");
        let pid = unshare.id();
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .expect("unshare's child");
        let init = children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the view's PID 1");
        ProcView {
            unshare,
            init,
            proc,
            dir,
        }
    }

    /// A command that runs `program` inside the view's PID namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args(["--target", &self.init.to_string(), "--pid", "--", program]);
        cmd
    }
}

impl Drop for ProcView {
    fn drop(&mut self) {
        // Killing unshare kills PID 1 of the view, and with it every
        // process inside; then the mount can go.
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
        let _ = Command::new("umount").arg("-l").arg(&self.proc).status();
        let _ = &self.dir;
    }
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "portwarden-test-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).expect("mkdir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What `promtool check metrics` says of `text`: empty when it is clean;
/// else its findings, or why it failed.
pub fn promtool_check(text: &str) -> String {
    let mut lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is missing: apt-get install prometheus (bash .ci/run does)");
    lint.stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = lint.wait_with_output().expect("promtool ends");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match out.status.success() {
        true => said.trim().to_string(),
        false => format!("failed: {said}"),
    }
}

/// Every sample of `family` in a text exposition, as (name and labels, value).
pub fn samples<'a>(text: &'a str, family: &str) -> Vec<(&'a str, f64)> {
    text.lines()
        .filter(|l| {
            l.strip_prefix(family)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
        })
        .filter_map(|l| {
            let (labels, v) = l.rsplit_once(' ')?;
            Some((labels, v.parse().ok()?))
        })
        .collect()
}

/// The sum of every sample of `family`.
pub fn total(text: &str, family: &str) -> f64 {
    samples(text, family).iter().map(|(_, v)| v).sum()
}

/// A free loopback port (nothing listens on it once this returns).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Percent-encodes a query parameter's value.
pub fn percent_encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `openssl ARGS` in `dir`; it must succeed.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian package openssl; .ci/run installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The key options of every test key: P-256, unencrypted.
const EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
];

/// A self-signed certificate `NAME.pem` with key `NAME.key` in `dir`
/// (a CA, or a certificate no CA vouches for).
pub fn self_signed(dir: &Path, name: &str, subject: &str, days: u32) {
    let (key, pem, days) = (
        format!("{name}.key"),
        format!("{name}.pem"),
        days.to_string(),
    );
    let mut args = vec!["req", "-x509"];
    args.extend(EC_KEY);
    args.extend([
        "-keyout", &key, "-out", &pem, "-days", &days, "-subj", subject,
    ]);
    openssl(dir, &args);
}

/// `NAME.pem` and `NAME.key` in `dir`, signed by `ca.pem`/`ca.key` there,
/// valid `days` from now, with the X.509 extensions `ext` (as
/// `openssl x509 -extfile` takes them).
pub fn issue(dir: &Path, name: &str, ext: &str, days: u32) {
    let (key, csr, pem, extfile) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
        format!("{name}.ext"),
    );
    std::fs::write(dir.join(&extfile), ext).expect("write ext");
    let subject = format!("/CN={name}");
    let mut req = vec!["req"];
    req.extend(EC_KEY);
    req.extend(["-keyout", &key, "-out", &csr, "-subj", &subject]);
    openssl(dir, &req);
    let days = days.to_string();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            &days,
            "-extfile",
            &extfile,
        ],
    );
}

/// A child process, killed and reaped on drop.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A field of `/proc/<pid>/status` given in kB (`VmRSS`, `VmHWM`), in bytes.
pub fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        * 1024
}

/// A Python child holding an exclusive `flock` on `path` for `seconds`,
/// returned once it holds it.
pub fn hold_flock(path: &Path, seconds: u32) -> Killed {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import fcntl,sys,time; f=open(sys.argv[1],'w'); fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(int(sys.argv[2]))",
        ])
        .arg(path)
        .arg(seconds.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("locked");
    Killed(child)
}

/// Starts `cmd`, a server that prints its port as its first line; returns
/// it (killed on drop) and the port.
pub fn serving(mut cmd: Command) -> (Killed, u16) {
    let mut child = Killed(
        cmd.stdout(Stdio::piped())
            .spawn()
            .expect("start the server"),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the server's port");
    let port = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a port: {line:?}"));
    (child, port)
}

/// A real Prometheus (Debian's `prometheus`) with `config`, on a free port,
/// its data in a temporary directory; inside the `ip netns` namespace
/// `netns` when given. Killed on drop.
pub struct Prometheus {
    child: Child,
    pub addr: std::net::SocketAddr,
    _dir: TempDir,
}

impl Prometheus {
    pub fn start(config: &str, netns: Option<&str>) -> Prometheus {
        let dir = TempDir::new("prometheus");
        let path = dir.0.join("prometheus.yml");
        std::fs::write(&path, config).expect("write config");
        let addr: std::net::SocketAddr =
            format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "prometheus"]);
                c
            }
            None => Command::new("prometheus"),
        };
        let child = cmd
            .arg(format!("--config.file={}", path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test slice in one hierarchy: the cgroups made below it, removed
/// (deepest first) on drop, once their processes are back at the root.
pub struct Tree {
    pub root: PathBuf,
    made: Vec<PathBuf>,
    pids: Vec<u32>,
}

impl Tree {
    pub fn new(hierarchy: &str, tag: &str) -> Option<Tree> {
        let root = Path::new(hierarchy).join(format!("pwtest-{tag}-{}.slice", std::process::id()));
        std::fs::create_dir(&root).ok()?;
        Some(Tree {
            made: vec![root.clone()],
            root,
            pids: Vec::new(),
        })
    }

    /// Moves `pid` into `<root>/<path>`, making the cgroups on the way.
    pub fn place(&mut self, path: &str, pid: u32) {
        let mut dir = self.root.clone();
        for part in path.split('/') {
            dir.push(part);
            if !dir.exists() {
                std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {dir:?}: {e}"));
                self.made.push(dir.clone());
            }
        }
        std::fs::write(dir.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|e| panic!("move {pid} into {dir:?}: {e}"));
        self.pids.push(pid);
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let top = self.root.parent().expect("hierarchy").join("cgroup.procs");
        for pid in &self.pids {
            let _ = std::fs::write(&top, pid.to_string());
        }
        for dir in self.made.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}
