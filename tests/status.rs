//! The status page's API, badges and plain-HTML page against a real
//! exporter watching real listeners on loopback: the schema (the fields of
//! `ls --json` and the engine's), the filters, a port that goes down
//! showing in its history, valid badges, and a page that needs no script.

mod common;

use std::process::Command;

use common::*;
use serde_json::{Value, json};

fn get_json(exporter: &Exporter, path: &str) -> (String, Value) {
    let (head, body) = exporter.get(path).expect("GET");
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {}", String::from_utf8_lossy(&body)));
    (head, value)
}

fn ports_of(v: &Value) -> Vec<Value> {
    v["ports"].as_array().expect("ports array").clone()
}

/// Polls `/api/v1/ports?port=…` until `check` holds for the port's rows.
fn wait_port(
    exporter: &Exporter,
    port: u16,
    what: &str,
    check: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, v) = get_json(exporter, &format!("/api/v1/ports?port={port}"));
        let rows = ports_of(&v);
        if check(&rows) {
            return rows;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}: {rows:#?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn health(rows: &[Value]) -> Option<&str> {
    rows.first().and_then(|r| r["health"].as_str())
}

#[test]
fn the_api_has_the_fields_of_ls_json_and_the_engines_and_filters_as_asked() {
    let tcp = Holder::start(&json!({"sockets": [
        {"proto": "tcp", "addr": "127.0.0.1"},
        {"proto": "tcp", "addr": "127.0.0.1", "backlog": 1},
        {"proto": "udp", "addr": "127.0.0.1"}
    ]}));
    let (ok, hung, udp) = (tcp.port(0), tcp.port(1), tcp.port(2));
    let exporter = Exporter::start(&[]);
    let rows = wait_port(&exporter, ok, "the listener ok", |r| {
        health(r) == Some("ok")
    });
    wait_port(&exporter, hung, "the stuck listener hung", |r| {
        health(r) == Some("hung")
    });
    let row = &rows[0];

    // Every field of `ls --json`, with the same values.
    let listed = ls_json(&["--port", &ok.to_string()]);
    let ls = entries_for(&listed, "tcp", ok);
    assert_eq!(ls.len(), 1, "{listed:#?}");
    let ls = ls[0].as_object().expect("object");
    for (key, value) in ls {
        let ours = row
            .get(key)
            .unwrap_or_else(|| panic!("{key} missing from {row:#}"));
        match key.as_str() {
            // A one-shot look and the engine's may differ in queue and health.
            "accept_queue" | "health" | "connect_seconds" => {}
            // Command lines carry secrets: they stay on the host.
            "owners" => {
                let mut expected = value.clone();
                for o in expected.as_array_mut().expect("owners") {
                    o.as_object_mut().expect("owner").remove("cmdline");
                }
                assert_eq!(ours, &expected, "owners");
            }
            _ => assert_eq!(ours, value, "{key}"),
        }
    }
    // The engine's own.
    assert_eq!(row["present"], true);
    assert_eq!(row["process_name"], ls["owners"][0]["process_name"]);
    assert!(
        row["last_check"].as_f64().is_some_and(|t| t > 1.7e9),
        "{row:#}"
    );
    assert!(
        row["connect_seconds"]
            .as_f64()
            .is_some_and(|s| s > 0.0 && s < 0.5)
    );
    let up = row["uptime_1h"].as_f64().expect("uptime_1h");
    assert!((0.0..=1.0).contains(&up));
    assert!(row["uptime_24h"].as_f64().is_some());
    let day = &row["history"];
    assert_eq!(day["minutes"], 1440);
    let since = day["since"].as_u64().expect("since");
    let spans = day["spans"].as_array().expect("spans");
    assert!(!spans.is_empty());
    for s in spans {
        let start = s["start"].as_u64().expect("start");
        assert!(start >= since && start % 60 == 0, "{s}");
        assert!(s["minutes"].as_u64().is_some_and(|m| m >= 1));
        assert!(
            ["ok", "slow", "hung", "down", "unknown"]
                .contains(&s["health"].as_str().expect("health"))
        );
    }
    assert_eq!(spans.last().expect("a span")["health"], "ok");

    // The envelope.
    let (head, all) = get_json(&exporter, "/api/v1/ports");
    assert!(!all.to_string().contains("cmdline"));
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    assert!(all["host"].as_str().is_some_and(|h| !h.is_empty()));
    assert!(all["last_discovery"].as_f64().is_some());
    assert!(all["last_rounds"]["tcp"].as_f64().is_some());
    let counted: u64 = ["ok", "slow", "hung", "down", "unknown"]
        .iter()
        .map(|w| all["counts"][w].as_u64().expect("count"))
        .sum();
    assert!(counted >= 3);
    assert!(all["counts"]["hung"].as_u64().expect("hung") >= 1);

    // Filters.
    let only = |q: &str| ports_of(&get_json(&exporter, &format!("/api/v1/ports?{q}")).1);
    let udp_rows = only(&format!("proto=udp&port={udp}"));
    assert_eq!(udp_rows.len(), 1);
    assert_eq!(udp_rows[0]["proto"], "udp");
    assert!(only(&format!("proto=tcp&port={udp}")).is_empty());
    let hung_rows = only("health=hung");
    assert!(hung_rows.iter().any(|r| r["port"] == hung));
    assert!(hung_rows.iter().all(|r| r["health"] == "hung"));
    assert!(!hung_rows.iter().any(|r| r["port"] == ok));
    let either = only("health=hung,ok");
    assert!(either.iter().any(|r| r["port"] == hung) && either.iter().any(|r| r["port"] == ok));
    assert!(only("netns=host").iter().all(|r| r["netns"] == "host"));
    assert!(only("netns=no-such-namespace").is_empty());
    assert!(
        only(&format!("port={ok}&history=false"))[0]
            .get("history")
            .is_some_and(Value::is_null)
    );
    assert_eq!(only("limit=2").len(), 2);
    for (bad, names) in [
        ("proto=icmp", "proto"),
        ("port=70000", "port"),
        ("health=sad", "health"),
        ("history=maybe", "history"),
    ] {
        let (head, v) = get_json(&exporter, &format!("/api/v1/ports?{bad}"));
        assert!(head.contains(" 400 "), "{bad}: {head}");
        assert!(
            v["error"].as_str().is_some_and(|e| e.starts_with(names)),
            "{bad}: {v}"
        );
    }
    drop(tcp);
}

#[test]
fn a_port_down_shows_a_down_minute_in_its_history_and_its_uptime() {
    let holder = Holder::start(&json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1"}]}));
    let port = holder.port(0);
    let exporter = Exporter::start(&[]);
    wait_port(&exporter, port, "ok", |r| health(r) == Some("ok"));
    holder.stop();
    // Down at once if a check finds it refused; gone at the next pass.
    let rows = wait_port(&exporter, port, "gone and down", |r| {
        health(r) == Some("down") && r.first().is_some_and(|r| r["present"] == false)
    });
    let row = &rows[0];
    // The gone port keeps its last socket and owner.
    assert_eq!(row["address"], "127.0.0.1");
    let spans = row["history"]["spans"].as_array().expect("spans");
    let last = spans.last().expect("a span");
    assert_eq!(last["health"], "down", "{spans:#?}");
    // It covers this minute (the window ends with it).
    let since = row["history"]["since"].as_u64().expect("since");
    let now_minute = since + 1439 * 60;
    assert_eq!(
        last["start"].as_u64().expect("start") + 60 * (last["minutes"].as_u64().expect("n") - 1),
        now_minute
    );
    assert!(row["uptime_1h"].as_f64().expect("uptime") < 1.0);
    let (_, badge) = exporter
        .get(&format!("/badge/tcp/{port}.svg"))
        .expect("badge");
    let badge = String::from_utf8(badge).expect("utf-8");
    assert!(badge.contains(">down · "), "{badge}");
}

/// Parses `svg` with Python's XML parser; returns its root tag and text.
fn parse_svg(svg: &str) -> (String, String) {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, xml.etree.ElementTree as E; r = E.fromstring(sys.stdin.read()); print(r.tag); print(' '.join(t.strip() for t in r.itertext()))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(svg.as_bytes())?;
            c.wait_with_output()
        })
        .expect("python3");
    assert!(
        out.status.success(),
        "not well-formed XML: {}\n{svg}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let mut lines = text.lines();
    (
        lines.next().unwrap_or_default().to_string(),
        lines.collect::<Vec<_>>().join(" "),
    )
}

#[test]
fn badges_are_valid_svg_with_the_right_word_for_ports_and_targets() {
    let dir = TempDir::new("badges");
    let holder = Holder::start(&json!({"sockets": [
        {"proto": "tcp", "addr": "127.0.0.1"},
        {"proto": "tcp", "addr": "127.0.0.1", "backlog": 1}
    ]}));
    let (ok, hung) = (holder.port(0), holder.port(1));
    let refused = free_port();
    let targets = dir.0.join("targets.yml");
    std::fs::write(
        &targets,
        format!(
            "targets:\n  - name: web <&>\n    target: 127.0.0.1:{ok}\n  - name: nothing\n    target: 127.0.0.1:{refused}\n"
        ),
    )
    .expect("write targets");
    let exporter = Exporter::start_with(
        &[
            "--targets.file",
            targets.to_str().expect("path"),
            "--targets.interval",
            "1s",
        ],
        &[],
    );
    wait_port(&exporter, hung, "hung", |r| health(r) == Some("hung"));
    wait_port(&exporter, ok, "ok", |r| health(r) == Some("ok"));
    let badge = |path: &str| {
        let (head, body) = exporter.get(path).expect("badge");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: image/svg+xml"),
            "{head}"
        );
        let svg = String::from_utf8(body).expect("utf-8");
        let (root, text) = parse_svg(&svg);
        assert_eq!(root, "{http://www.w3.org/2000/svg}svg");
        (head, text)
    };
    let (head, text) = badge(&format!("/badge/tcp/{ok}.svg"));
    assert!(head.contains(" 200 "));
    assert!(
        text.contains(&format!("tcp/{ok}")) && text.contains("ok · 100%"),
        "{text}"
    );
    let (_, text) = badge(&format!("/badge/tcp/{hung}.svg?netns=host"));
    assert!(text.contains("hung · "), "{text}");
    let (head, text) = badge("/badge/udp/1.svg");
    assert!(
        head.contains(" 404 ") && text.contains("not watched"),
        "{text}"
    );
    let (head, _) = badge("/badge/sctp/1.svg");
    assert!(head.contains(" 404 "));

    // Targets: their own word and history, by name (percent-encoded).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, v) = get_json(&exporter, "/api/v1/targets");
        let t = v["targets"].as_array().expect("targets").clone();
        let word = |name: &str| {
            t.iter()
                .find(|x| x["name"] == name)
                .map(|x| x["health"].clone())
        };
        if word("web <&>") == Some(json!("ok")) && word("nothing") == Some(json!("down")) {
            let down = t.iter().find(|x| x["name"] == "nothing").expect("nothing");
            assert_eq!(down["reason"], "refused");
            let spans = down["history"]["spans"].as_array().expect("spans");
            assert_eq!(spans.last().expect("span")["health"], "down");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "targets not checked: {v:#}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (head, text) = badge("/badge/target/web%20%3C%26%3E.svg");
    assert!(
        head.contains(" 200 ") && text.contains("web <&>") && text.contains("ok · "),
        "{text}"
    );
    let (_, text) = badge("/badge/target/nothing.svg");
    assert!(text.contains("down · 0.0%"), "{text}");
    let (head, _) = badge("/badge/target/absent.svg");
    assert!(head.contains(" 404 "));
}

#[test]
fn the_page_is_a_plain_table_without_script_with_a_strict_policy_and_no_external_url() {
    let dir = TempDir::new("page");
    // A process that names itself with markup must not inject it.
    let hostile = "evil<b>&\"x";
    let (_exe, holder) = listener_named(&dir.0, hostile);
    let port = holder.port(0);
    let other =
        Holder::start(&json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1", "backlog": 1}]}));
    let exporter = Exporter::start(&[]);
    wait_port(&exporter, port, "ok", |r| health(r) == Some("ok"));
    wait_port(&exporter, other.port(0), "hung", |r| {
        health(r) == Some("hung")
    });

    let (head, body) = exporter.get("/").expect("page");
    let page = String::from_utf8(body).expect("utf-8");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("content-type: text/html"), "{head}");
    assert!(
        lower.contains(
            "content-security-policy: default-src 'none'; script-src 'self'; style-src 'self'"
        ),
        "{head}"
    );
    assert!(lower.contains("x-content-type-options: nosniff"));
    // No inline script or style, no URL off the exporter.
    assert!(!page.contains(" style="), "inline style");
    assert!(page.matches("<script").count() == page.matches("<script src=\"assets/").count());
    assert!(!page.contains("<script>"));
    for scheme in ["http://", "https://", "src=\"//", "href=\"//"] {
        assert!(!page.contains(scheme), "{scheme} in the page");
    }
    // The rows, with their health.
    let row = |p: u16| {
        page.lines()
            .find(|l| l.contains(&format!("<td class=\"c-port\">{p}</td>")))
            .unwrap_or_else(|| panic!("no row for {p}"))
            .to_string()
    };
    assert!(row(port).contains("data-health=\"ok\""));
    assert!(row(other.port(0)).contains("data-health=\"hung\""));
    assert!(
        row(port).contains("evil&lt;b&gt;&amp;&quot;x"),
        "{}",
        row(port)
    );
    assert!(!page.contains("evil<b>"));

    // Filter, sort and group by query.
    let (_, body) = exporter.get(&format!("/?q={port}+evil")).expect("filtered");
    let filtered = String::from_utf8(body).expect("utf-8");
    assert_eq!(filtered.matches("<tr data-key=").count(), 1, "{filtered}");
    let (_, body) = exporter.get("/?sort=health&dir=asc").expect("sorted");
    let sorted = String::from_utf8(body).expect("utf-8");
    let first_hung = sorted.find("data-health=\"hung\"").expect("a hung row");
    let first_ok = sorted.find("data-health=\"ok\"").expect("an ok row");
    assert!(first_hung < first_ok, "worst first");
    let (_, body) = exporter.get("/?group=netns").expect("grouped");
    assert!(
        String::from_utf8(body)
            .expect("utf-8")
            .contains("<tr class=\"group\"><th colspan=\"13\">host</th></tr>")
    );
    let (_, body) = exporter.get("/?limit=1").expect("limited");
    let limited = String::from_utf8(body).expect("utf-8");
    assert_eq!(limited.matches("<tr data-key=").count(), 1);
    assert!(
        limited.contains("The first 1 of "),
        "the page says rows were left out"
    );
    let (head, body) = exporter.get("/?sort=nonsense").expect("bad sort");
    assert!(head.contains(" 400 ") && String::from_utf8_lossy(&body).contains("sort="));

    // The assets, embedded.
    for (path, kind) in [
        ("/assets/status.js", "text/javascript"),
        ("/assets/status.css", "text/css"),
        ("/assets/favicon.svg", "image/svg+xml"),
    ] {
        let (head, body) = exporter.get(path).expect("asset");
        assert!(
            head.contains(" 200 ") && head.to_ascii_lowercase().contains(kind),
            "{path}: {head}"
        );
        let text = String::from_utf8(body).expect("utf-8");
        for scheme in ["http://", "https://", "url(//"] {
            assert!(
                !text.contains(scheme)
                    || (path.ends_with(".svg")
                        && text.matches(scheme).count()
                            == text.matches("xmlns=\"http://www.w3.org/2000/svg\"").count()),
                "{scheme} in {path}"
            );
        }
    }
    drop(holder);
}

#[test]
fn the_page_its_api_and_badges_can_be_switched_off() {
    let exporter = Exporter::start(&[("PORTWARDEN_WEB_STATUS_PAGE", "false")]);
    for path in [
        "/",
        "/api/v1/ports",
        "/badge/tcp/22.svg",
        "/assets/status.js",
    ] {
        let (head, _) = exporter.get(path).expect("GET");
        assert!(head.contains(" 404 "), "{path}: {head}");
    }
    assert!(exporter.scrape().contains("node_tcp_port_alive"));
    let out = run(&["serve", "--web.status-page", "maybe"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--web.status-page"));
}

/// A process whose name and path hold U+202E (right-to-left override) would
/// make the page and the API read backwards: both write it out, as `ls`.
#[test]
fn marks_that_reorder_text_are_written_out_on_the_page_and_in_the_api() {
    let dir = TempDir::new("bidi");
    let (_exe, holder) = listener_named(&dir.0, "rtl\u{202E}cod.x");
    let port = holder.port(0);
    let exporter = Exporter::start(&[]);
    let rows = wait_port(&exporter, port, "the listener ok", |r| {
        health(r) == Some("ok")
    });
    let owner = &rows[0]["owners"][0];
    for field in [
        &rows[0]["process_name"],
        &owner["process_name"],
        &owner["exe_path"],
    ] {
        let text = field.as_str().expect("a string");
        assert!(!text.contains('\u{202E}'), "raw in the API: {text:?}");
        assert!(text.contains("rtl\\u{202e}cod.x"), "{text:?}");
    }
    let (_, body) = exporter.get(&format!("/?q={port}")).expect("page");
    let page = String::from_utf8(body).expect("utf-8");
    assert!(!page.contains('\u{202E}'), "raw on the page");
    assert!(page.contains("rtl\\u{202e}cod.x"));
}
