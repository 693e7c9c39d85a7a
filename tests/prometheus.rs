//! A real Prometheus (Debian's `prometheus` package) scrapes a portwarden
//! this test started; its HTTP API must show the target up and the test's
//! port in `node_tcp_port_alive`. Another scrapes `/probe` with
//! blackbox_exporter's documented relabelling, changed only in the
//! exporter's address.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn query(addr: std::net::SocketAddr, q: &str) -> Option<Vec<Value>> {
    let (_, body) = http_get(
        addr,
        &format!("/api/v1/query?query={}", percent_encode(q)),
        &[],
    )
    .ok()?;
    let v: Value = serde_json::from_slice(&body).ok()?;
    (v["status"] == "success").then(|| v["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// The value of the one series `q` finds, once it has one (up to 60 s).
fn value_of(prom: std::net::SocketAddr, q: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(r) = query(prom, q)
            && let Some(v) = r.first().and_then(|s| s["value"][1].as_str())
        {
            assert_eq!(r.len(), 1, "{q}: {r:?}");
            return v.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "{q} never had a value in prometheus"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn prometheus_probes_through_portwarden_as_through_blackbox() {
    // Two Prometheus servers and exporters at once crowd two cores past
    // the 1 s scrape timeout.
    let _one_at_a_time = serial();
    let Ok(version) = Command::new("prometheus").arg("--version").output() else {
        panic!("prometheus is missing: apt-get install prometheus (bash .ci/run does)");
    };
    assert!(version.status.success());
    let open = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let open = open.local_addr().expect("addr").to_string();
    let closed = format!("127.0.0.1:{}", free_port());
    let exporter = Exporter::start(&[
        ("ENABLE_HTTP_DETECTION", "false"),
        ("PORTWARDEN_WEB_PROBE", "true"),
    ]);
    // blackbox_exporter's README, with its address replaced.
    let prometheus = Prometheus::start(
        &format!(
            r#"global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: blackbox
    metrics_path: /probe
    params:
      module: [tcp_connect]
    static_configs:
      - targets: ['{open}', '{closed}']
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: {exporter}
"#,
            exporter = exporter.addr
        ),
        None,
    );
    let prom = prometheus.addr;
    for target in [&open, &closed] {
        assert_eq!(
            value_of(prom, &format!("up{{instance=\"{target}\"}}")),
            "1",
            "{target}: the scrape works"
        );
    }
    assert_eq!(
        value_of(prom, &format!("probe_success{{instance=\"{open}\"}}")),
        "1"
    );
    assert_eq!(
        value_of(prom, &format!("probe_success{{instance=\"{closed}\"}}")),
        "0"
    );
    // The timeout Prometheus sent (1 s) less blackbox's offset bounded the probe.
    let took: f64 = value_of(
        prom,
        &format!("probe_duration_seconds{{instance=\"{closed}\"}}"),
    )
    .parse()
    .expect("seconds");
    assert!(took < 0.5, "{took}");
}

#[test]
fn prometheus_scrapes_portwarden() {
    let _one_at_a_time = serial();
    let Ok(version) = Command::new("prometheus").arg("--version").output() else {
        panic!("prometheus is missing: apt-get install prometheus (bash .ci/run does)");
    };
    assert!(version.status.success());

    let holder = Holder::start(&json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1"}]}));
    let port = holder.port(0);
    let exporter = Exporter::start(&[("ENABLE_HTTP_DETECTION", "false")]);
    exporter.wait_for(15, "the port checked", |t| {
        series_value(t, "node_tcp_port_alive", port) == Some(1.0)
    });

    let prometheus = Prometheus::start(
        &format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: portwarden\n    static_configs:\n      - targets: ['{}']\n",
            exporter.addr
        ),
        None,
    );
    let prom_addr = prometheus.addr;

    let up = value_of(prom_addr, "up{job=\"portwarden\"}");
    assert_eq!(up, "1", "the target is down");

    let deadline = Instant::now() + Duration::from_secs(60);
    let q = format!("node_tcp_port_alive{{port=\"{port}\"}}");
    let series = loop {
        if let Some(r) = query(prom_addr, &q).filter(|r| !r.is_empty()) {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "{q} never appeared in prometheus"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(series.len(), 1, "{series:?}");
    assert_eq!(series[0]["value"][1], "1");
    let labels = &series[0]["metric"];
    assert_eq!(labels["job"], "portwarden");
    assert!(
        labels["process_name"]
            .as_str()
            .is_some_and(|n| n.starts_with("python")),
        "{labels}"
    );
    assert!(
        labels["exe_path"]
            .as_str()
            .is_some_and(|p| p.starts_with('/')),
        "{labels}"
    );

    // Prometheus asked for OpenMetrics and got it, and saw no scrape errors.
    let samples = query(prom_addr, "scrape_samples_scraped{job=\"portwarden\"}").expect("query");
    let n: f64 = samples[0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("a count");
    assert!(n > 10.0, "{n}");
}
