//! The status page in a real browser: Debian's headless Chromium, driven
//! through Debian's ChromeDriver (WebDriver over loopback HTTP). The page
//! loads without a console error or a request to anything but the
//! exporter; it shows known listeners with their health; the filter narrows
//! the rows; a listener closed during the test turns `down` without a
//! reload; a hung one shows `hung`; it fits a phone's width. Screenshots go
//! to the test's output directory (`target/tmp/status-page/`).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;
use serde_json::{Value, json};

/// One HTTP/1.1 exchange with ChromeDriver: (status, JSON body).
fn call(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to chromedriver");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let payload = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n{payload}",
        payload.len()
    );
    stream.write_all(request.as_bytes()).expect("send");
    // ChromeDriver keeps the connection open: read the head, then as
    // many bytes as it announces.
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    let split = loop {
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut buf).expect("read");
        assert!(n > 0, "chromedriver closed the connection early");
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .expect("content-length");
    let mut body = raw[split + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut buf).expect("read");
        assert!(n > 0, "chromedriver closed the connection early");
        body.extend_from_slice(&buf[..n]);
    }
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, value)
}

/// A ChromeDriver with one headless Chromium session.
struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    _profile: TempDir,
}

impl Browser {
    fn start() -> Option<Browser> {
        for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
            if !std::path::Path::new(tool).exists() {
                cannot_run(&format!(
                    "{tool} is missing (apt-get install -y chromium chromium-driver)"
                ));
                return None;
            }
        }
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = TempDir::new("chromium");
        // Without the background-networking flags Chromium calls home at
        // its start; with them it reaches nothing but what it is sent to.
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1400,900",
        ];
        let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.0.display()));
        let mut driver = KillOnDrop(Some(driver));
        let (status, v) = call(
            addr,
            "POST",
            "/session",
            Some(&json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args},
                "goog:loggingPrefs": {"browser": "ALL", "performance": "ALL"}
            }}})),
        );
        assert_eq!(status, 200, "new session: {v:#}");
        let session = v["value"]["sessionId"]
            .as_str()
            .expect("session id")
            .to_string();
        Some(Browser {
            driver: driver.0.take().expect("the driver"),
            addr,
            session,
            _profile: profile,
        })
    }

    fn cmd(&self, method: &str, what: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}/{what}", self.session);
        let (status, v) = call(self.addr, method, &path, body.as_ref());
        assert_eq!(status, 200, "{method} {what}: {v:#}");
        v["value"].clone()
    }

    fn go(&self, url: &str) {
        self.cmd("POST", "url", Some(json!({ "url": url })));
    }

    fn run(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    fn type_into(&self, css: &str, text: &str) {
        let found = self.cmd(
            "POST",
            "element",
            Some(json!({"using": "css selector", "value": css})),
        );
        let id = found["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .expect("element id")
            .to_string();
        self.cmd(
            "POST",
            &format!("element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// The browser's console, or its performance (network) log, since the
    /// last call.
    fn log(&self, kind: &str) -> Vec<Value> {
        self.cmd("POST", "se/log", Some(json!({ "type": kind })))
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn screenshot(&self, to: &PathBuf) {
        let png = self.cmd("GET", "screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("base64"))
            .expect("decode");
        std::fs::write(to, bytes).expect("write screenshot");
        eprintln!("screenshot: {}", to.display());
    }

    fn resize(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "window/rect",
            Some(json!({"width": width, "height": height})),
        );
    }

    /// Runs `script` until it returns true, up to `seconds`.
    fn wait(&self, seconds: u64, what: &str, script: &str) {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            if self.run(script) == json!(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; rows: {:#}",
                self.run(ROWS)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = call(
            self.addr,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// ChromeDriver until a session holds it: a failed start leaves no
/// process behind.
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Every port row as the page shows it: port, health word, shown or not.
const ROWS: &str = "return Array.from(document.querySelectorAll('#ports tr[data-key]')).map(function (r) { return { port: r.querySelector('td.c-port').textContent, health: r.querySelector('td.c-health .health').textContent, shown: !r.hidden && r.offsetParent !== null, q: r.getAttribute('data-q') }; });";

fn health_of(port: u16) -> String {
    format!(
        "return Array.from(document.querySelectorAll('#ports tr[data-key]')).some(function (r) {{ return r.querySelector('td.c-port').textContent === '{port}' && r.querySelector('td.c-health .health').textContent === "
    )
}

fn out_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-page");
    std::fs::create_dir_all(&dir).expect("output directory");
    dir
}

#[test]
fn the_status_page_in_chromium_shows_health_live_filters_and_calls_nothing_else() {
    let mut ok = Holder::start(&json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1"}]}));
    let steady = Holder::start(&json!({"sockets": [
        {"proto": "tcp", "addr": "127.0.0.1", "backlog": 1},
        {"proto": "tcp", "addr": "::1"},
        {"proto": "udp", "addr": "127.0.0.1"}
    ]}));
    let (closing, hung) = (ok.port(0), steady.port(0));
    let exporter = Exporter::start(&[]);
    let Some(browser) = Browser::start() else {
        return;
    };
    let origin = format!("http://{}", exporter.addr);
    browser.go(&format!("{origin}/"));
    browser.wait(
        10,
        "the script to run",
        "return document.documentElement.classList.contains('js');",
    );
    let is = |port: u16, word: &str| format!("{}'{word}'; }});", health_of(port));
    browser.wait(30, "the open listener ok", &is(closing, "ok"));
    browser.wait(30, "the stuck listener hung", &is(hung, "hung"));
    browser.wait(30, "the IPv6 listener", &format!("return Array.from(document.querySelectorAll('#ports tr[data-key]')).some(function (r) {{ return r.getAttribute('data-key') === 'tcp6/::1/{}/host'; }});", steady.port(1)));
    // A marker a reload would wipe.
    browser.run("window.stillTheSamePage = 42; return true;");

    // The filter narrows the rows as one types.
    let total = browser.run(ROWS).as_array().expect("rows").len();
    browser.type_into("input[name=q]", &closing.to_string());
    browser.wait(5, "the filter to apply", &format!(
        "var rows = Array.from(document.querySelectorAll('#ports tr[data-key]')); var shown = rows.filter(function (r) {{ return !r.hidden; }}); return shown.length >= 1 && shown.length < {total} && shown.every(function (r) {{ return r.getAttribute('data-q').indexOf('{closing}') !== -1; }});"
    ));
    let rows = browser.run(ROWS);
    let shown: Vec<&Value> = rows
        .as_array()
        .expect("rows")
        .iter()
        .filter(|r| r["shown"] == true)
        .collect();
    assert!(
        shown
            .iter()
            .any(|r| r["port"].as_str() == Some(&*closing.to_string())),
        "{rows:#}"
    );
    assert!(shown.len() < total, "{} of {total} shown", shown.len());
    browser.screenshot(&out_dir().join("status-filtered.png"));
    browser.run("var q = document.querySelector('input[name=q]'); q.value = ''; q.dispatchEvent(new Event('input')); return true;");
    browser.wait(5, "every row back", "return Array.from(document.querySelectorAll('#ports tr[data-key]')).every(function (r) { return !r.hidden; });");

    // Closed during the test: down on the page, without a reload.
    ok.close_sockets();
    browser.wait(30, "the closed listener down", &is(closing, "down"));
    assert_eq!(
        browser.run("return window.stillTheSamePage;"),
        json!(42),
        "the page was reloaded"
    );
    assert_eq!(browser.run(&is(hung, "hung")), json!(true));
    // Its bar shows the down minute.
    assert_eq!(
        browser.run(&format!(
            "return Array.from(document.querySelectorAll('#ports tr[data-key]')).filter(function (r) {{ return r.querySelector('td.c-port').textContent === '{closing}'; }}).every(function (r) {{ return r.querySelector('td.c-bar rect.h-down') !== null; }});"
        )),
        json!(true)
    );
    // The counts in the header follow.
    assert_eq!(
        browser
            .run("return Number(document.querySelector('.counts li.h-down b').textContent) >= 1;"),
        json!(true)
    );
    // Let the refreshes run a few more times, then read the logs.
    std::thread::sleep(Duration::from_secs(6));
    browser.screenshot(&out_dir().join("status.png"));

    let console = browser.log("browser");
    let bad: Vec<&Value> = console
        .iter()
        .filter(|e| e["level"] != "INFO" && e["level"] != "DEBUG")
        .collect();
    assert!(bad.is_empty(), "console: {bad:#?}");
    let mut requests = Vec::new();
    for entry in browser.log("performance") {
        let Some(message) = entry["message"].as_str() else {
            continue;
        };
        let event: Value = serde_json::from_str(message).expect("performance entry");
        if event["message"]["method"] == "Network.requestWillBeSent" {
            let params = &event["message"]["params"];
            // The browser's own first page (its new-tab page) is not ours.
            if params["documentURL"]
                .as_str()
                .is_some_and(|d| d.starts_with("chrome://"))
            {
                continue;
            }
            requests.push(
                params["request"]["url"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
    }
    assert!(!requests.is_empty(), "no request seen");
    for url in &requests {
        assert!(
            url.starts_with(&format!("{origin}/")),
            "a request off the exporter: {url}"
        );
    }
    for asset in ["/assets/status.js", "/assets/status.css"] {
        assert!(
            requests.iter().any(|u| u.ends_with(asset)),
            "{asset} not loaded: {requests:#?}"
        );
    }
    let refreshes = requests.iter().filter(|u| u.contains("/?sort=")).count();
    assert!(refreshes >= 2, "{refreshes} refreshes: {requests:#?}");

    // A phone: no page-wide sideways scroll; the rows still read.
    browser.resize(390, 844);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        browser.run("return document.documentElement.scrollWidth <= window.innerWidth + 1;"),
        json!(true),
        "wider than a phone"
    );
    assert_eq!(browser.run(&is(hung, "hung")), json!(true));
    // Port and health are on the screen without scrolling.
    assert_eq!(
        browser.run(
            "return Array.from(document.querySelectorAll('#ports tr[data-key] td.c-health, #ports tr[data-key] td.c-port')).every(function (c) { var r = c.getBoundingClientRect(); return r.width > 0 && r.right <= window.innerWidth; });"
        ),
        json!(true),
        "port or health off a phone's screen"
    );
    browser.screenshot(&out_dir().join("status-phone.png"));
    drop(steady);
}
