//! What ships for Prometheus and Grafana (deploy/prometheus/, deploy/grafana/):
//! the rules pass `promtool check rules` and their unit tests (one per alert),
//! and every metric the rules and the dashboard name is one a running
//! portwarden exports at /metrics or /probe — one vocabulary.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::{Value, json};

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .output()
        .expect("promtool (Debian package prometheus; .ci/run installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

/// The rules file, parsed: (alert or record name, expression) of each rule.
fn rules() -> Vec<(String, bool, String)> {
    let text = std::fs::read_to_string(deploy("prometheus/portwarden.rules.yml")).expect("rules");
    let doc: Value = serde_saphyr::from_str(&text).expect("YAML");
    let mut out = Vec::new();
    for group in doc["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let (name, alert) = match (rule["alert"].as_str(), rule["record"].as_str()) {
                (Some(a), _) => (a, true),
                (None, Some(r)) => (r, false),
                _ => panic!("a rule with neither alert nor record: {rule}"),
            };
            let expr = rule["expr"].as_str().expect("expr").to_string();
            out.push((name.to_string(), alert, expr));
        }
    }
    out
}

#[test]
fn the_rules_are_valid_and_every_alert_is_tested() {
    promtool(&["check", "rules", "deploy/prometheus/portwarden.rules.yml"]);
    let mut tests: Vec<String> = std::fs::read_dir(deploy("prometheus/tests"))
        .expect("tests")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .map(|p| {
            p.strip_prefix(env!("CARGO_MANIFEST_DIR"))
                .expect("in repo")
                .display()
                .to_string()
        })
        .collect();
    tests.sort();
    let mut args = vec!["test", "rules"];
    args.extend(tests.iter().map(String::as_str));
    let out = promtool(&args);
    assert!(!out.contains("FAILED"), "{out}");
    // One test per alert, named after it.
    let mut names = BTreeSet::new();
    for file in &tests {
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file))
            .expect("test file");
        let doc: Value = serde_saphyr::from_str(&text).expect("YAML");
        for t in doc["tests"].as_array().expect("tests") {
            let name = t["name"].as_str().expect("name");
            names.insert(name.split(':').next().unwrap_or_default().to_string());
            // Each shows its alert quiet at least once and firing once.
            let checks = t["alert_rule_test"].as_array().expect("alert_rule_test");
            assert!(
                checks
                    .iter()
                    .any(|c| c["exp_alerts"].as_array().is_some_and(Vec::is_empty))
                    && checks.iter().any(|c| c["exp_alerts"]
                        .as_array()
                        .is_some_and(|a| !a.is_empty()
                            && a.iter()
                                .all(|x| x["exp_annotations"]["runbook_url"].is_string()))),
                "{name}: quiet once and firing (with its annotations) once"
            );
        }
    }
    let alerts: BTreeSet<String> = rules()
        .into_iter()
        .filter(|(_, alert, _)| *alert)
        .map(|(n, _, _)| n)
        .collect();
    assert_eq!(
        alerts, names,
        "every alert has its test, and every test its alert"
    );
    // Every alert has its runbook, and its link ends in the alert's name.
    let runbooks: Vec<&str> = portwarden::server::runbooks::sections()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let text = std::fs::read_to_string(deploy("prometheus/portwarden.rules.yml")).expect("rules");
    let doc: Value = serde_saphyr::from_str(&text).expect("YAML");
    for group in doc["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let Some(alert) = rule["alert"].as_str() else {
                continue;
            };
            assert!(
                runbooks.contains(&alert),
                "docs/runbooks.md has no section for {alert}"
            );
            let url = rule["annotations"]["runbook_url"]
                .as_str()
                .expect("runbook_url");
            assert!(url.ends_with(&format!("/{alert}")), "{alert}: {url}");
            for key in ["summary", "description"] {
                assert!(rule["annotations"][key].is_string(), "{alert}: {key}");
            }
            assert!(
                ["warning", "critical"]
                    .contains(&rule["labels"]["severity"].as_str().unwrap_or("")),
                "{alert}: severity"
            );
        }
    }
}

/// The metric names an expression reads: label matchers, ranges, strings
/// and the label lists of `by`, `on` and the like taken out, then every
/// identifier that is not a function, a keyword or a number.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut text = String::new();
    let mut depth_brace = 0;
    let mut depth_bracket = 0;
    let mut in_string = false;
    for c in expr.chars() {
        match c {
            '"' if depth_brace == 0 => in_string = !in_string,
            _ if in_string => {}
            '{' => depth_brace += 1,
            '}' => depth_brace -= 1,
            '[' => depth_bracket += 1,
            ']' => depth_bracket -= 1,
            _ if depth_brace > 0 || depth_bracket > 0 => {}
            c => text.push(c),
        }
    }
    // by (...), on (...), without (...), ignoring (...), group_left (...).
    let mut cleaned = String::new();
    let mut rest = text.as_str();
    let label_lists = [
        "by",
        "on",
        "without",
        "ignoring",
        "group_left",
        "group_right",
    ];
    while let Some(i) = rest.find(|c: char| c.is_ascii_alphabetic() || c == '_') {
        cleaned.push_str(&rest[..i]);
        let after = &rest[i..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(after.len());
        let word = &after[..end];
        let tail = after[end..].trim_start();
        if label_lists.contains(&word) && tail.starts_with('(') {
            let close = tail.find(')').expect("closed label list");
            rest = &tail[close + 1..];
            continue;
        }
        cleaned.push_str(word);
        if let Some(inner) = tail.strip_prefix('(') {
            cleaned.push('(');
            rest = inner;
        } else {
            cleaned.push(' ');
            rest = &after[end..];
        }
    }
    cleaned.push_str(rest);
    let keywords = ["and", "or", "unless", "bool", "offset"];
    let mut names = BTreeSet::new();
    let mut rest = cleaned.as_str();
    while let Some(i) = rest.find(|c: char| c.is_ascii_alphabetic() || c == '_') {
        let after = &rest[i..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(after.len());
        let word = &after[..end];
        let is_function = after[end..].trim_start().starts_with('(');
        if !is_function
            && !keywords.contains(&word)
            && !rest[..i].ends_with(|c: char| c.is_ascii_digit() || c == '.')
        {
            names.insert(word.to_string());
        }
        rest = &after[end..];
    }
    names
}

#[test]
fn metric_names_are_read_from_promql() {
    assert_eq!(
        metric_names(
            r#"node_http_port_alive == 0 and on (instance, port) node_tcp_port_alive{a="b"} == 1"#
        ),
        BTreeSet::from(["node_http_port_alive".into(), "node_tcp_port_alive".into()])
    );
    assert_eq!(
        metric_names(
            r#"sum by (port) (rate(x_total{job=~"a|b"}[5m])) / clamp_min(y:z:w, 0.001) > 4e3"#
        ),
        BTreeSet::from(["x_total".into(), "y:z:w".into()])
    );
}

/// Every expression of the dashboard: its panels' queries and its
/// variables' (`label_values(metric, label)` names the metric).
fn dashboard_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(deploy("grafana/portwarden.json")).expect("dashboard");
    let doc: Value = serde_json::from_str(&text).expect("JSON");
    let mut out = Vec::new();
    for panel in doc["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().into_iter().flatten() {
            out.push(t["expr"].as_str().expect("expr").to_string());
        }
    }
    for v in doc["templating"]["list"].as_array().expect("variables") {
        if let Some(q) = v["query"]["query"].as_str() {
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|r| r.rsplit_once(','))
                .map(|(metric, _)| metric.to_string())
                .unwrap_or_else(|| q.to_string());
            out.push(inner);
        }
    }
    assert!(out.len() > 15, "{out:?}");
    out
}

/// Names a text exposition has: its samples' and its families'.
fn exported(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let name = match line.strip_prefix("# TYPE ") {
            Some(rest) => rest.split(' ').next(),
            None if line.starts_with('#') => None,
            None => line.split(['{', ' ']).next(),
        };
        if let Some(n) = name.filter(|n| !n.is_empty()) {
            names.insert(n.to_string());
        }
    }
    names
}

#[test]
fn every_metric_the_rules_and_the_dashboard_name_is_exported() {
    let _one_at_a_time = serial();
    let holder = Holder::start(&json!({"sockets": [{"proto": "tcp", "addr": "127.0.0.1"}]}));
    let web = Server::start("http");
    let dir = TempDir::new("vocabulary");
    let targets = dir.0.join("targets.yml");
    std::fs::write(
        &targets,
        format!("targets:\n  - target: '127.0.0.1:{}'\n", holder.port(0)),
    )
    .expect("targets.yml");
    // An action that matches nothing here: its families exist all the same.
    let actions = dir.0.join("actions.yml");
    std::fs::write(
        &actions,
        "actions:\n  - name: never\n    match: {port: 1}\n    when: [down]\n    run: [/bin/true]\n",
    )
    .expect("actions.yml");
    let exporter = Exporter::start(&[
        ("PORTWARDEN_ACTIONS_FILE", actions.to_str().expect("utf-8")),
        ("PORTWARDEN_TARGETS_FILE", targets.to_str().expect("utf-8")),
        ("PORTWARDEN_BASELINE_LEARN", "1s"),
        ("PORT_HTTP_STATUS_INTERVAL", "500ms"),
        ("PORTWARDEN_WEB_PROBE", "true"),
    ]);
    let text = exporter.wait_for(30, "a learned port, an HTTP port and a target", |t| {
        t.contains("portwarden_expected_port_up{")
            && t.contains("node_http_port_alive{")
            && t.contains("portwarden_target_up{")
    });
    let mut known = exported(&text);
    for (target, module) in [
        (format!("127.0.0.1:{}", holder.port(0)), "tcp_connect"),
        (format!("http://127.0.0.1:{}/", web.port), "http_2xx"),
    ] {
        let (_, body) = exporter
            .get(&format!(
                "/probe?module={module}&target={}",
                percent_encode(&target)
            ))
            .expect("probe");
        known.extend(exported(&String::from_utf8_lossy(&body)));
    }
    // Prometheus's own, and the rules' recordings.
    known.insert("up".into());
    let rules = rules();
    known.extend(
        rules
            .iter()
            .filter(|(_, alert, _)| !alert)
            .map(|(n, _, _)| n.clone()),
    );

    let mut unknown = Vec::new();
    for (what, expr) in rules
        .iter()
        .map(|(n, _, e)| (format!("rule {n}"), e.clone()))
        .chain(
            dashboard_exprs()
                .into_iter()
                .map(|e| ("dashboard".to_string(), e)),
        )
    {
        for name in metric_names(&expr) {
            if !known.contains(&name) {
                unknown.push(format!("{what}: {name}"));
            }
        }
    }
    assert!(unknown.is_empty(), "not exported: {unknown:?}");
}

/// Each alert's `runbook_url` as Prometheus fills it in (the promtool
/// tests pin it for their test instance): (alert, URL).
fn filled_in_links() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(deploy("prometheus/tests")).expect("tests") {
        let path = entry.expect("entry").path();
        let doc: Value =
            serde_saphyr::from_str(&std::fs::read_to_string(&path).expect("read")).expect("YAML");
        for t in doc["tests"].as_array().expect("tests") {
            for check in t["alert_rule_test"].as_array().expect("alert_rule_test") {
                let alert = check["alertname"].as_str().expect("alertname");
                for a in check["exp_alerts"].as_array().into_iter().flatten() {
                    if let Some(url) = a["exp_annotations"]["runbook_url"].as_str() {
                        out.push((alert.to_string(), url.to_string()));
                    }
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn every_runbook_link_answers_with_its_alerts_section() {
    let links = filled_in_links();
    let alerts: BTreeSet<&str> = links.iter().map(|(a, _)| a.as_str()).collect();
    let all: BTreeSet<String> = rules()
        .into_iter()
        .filter(|(_, alert, _)| *alert)
        .map(|(n, _, _)| n)
        .collect();
    assert_eq!(
        alerts,
        all.iter().map(String::as_str).collect(),
        "a filled-in link for every alert"
    );
    let exporter = Exporter::start(&[]);
    for (alert, url) in &links {
        // As Alertmanager hands it on: http://<instance>/runbooks/<Alert>,
        // the test's instance being this exporter.
        let rest = url.strip_prefix("http://").expect("an http:// link");
        let (instance, path) = rest.split_once('/').expect("a path");
        assert_eq!(instance, "web1:9765", "{alert}: the test instance");
        let (status, body) = exporter.get(&format!("/{path}")).expect("runbook");
        let body = String::from_utf8(body).expect("utf-8");
        assert!(status.contains("200"), "{alert}: {status}");
        let (_, text) = portwarden::server::runbooks::sections()
            .into_iter()
            .find(|(name, _)| name == alert)
            .expect("its section");
        assert!(
            body.contains(&format!("<h1>{alert}</h1>"))
                && body.contains(&portwarden::server::runbooks::render(text)),
            "{alert}: its section, rendered:\n{body}"
        );
    }
    // The index links every one; an unknown alert is a 404.
    let (status, body) = exporter.get("/runbooks").expect("index");
    assert!(status.contains("200"), "{status}");
    let body = String::from_utf8(body).expect("utf-8");
    for alert in &all {
        assert!(
            body.contains(&format!("href=\"runbooks/{alert}\"")),
            "{alert}"
        );
    }
    let (status, _) = exporter.get("/runbooks/NoSuchAlert").expect("404");
    assert!(status.contains("404"), "{status}");
}

#[test]
fn the_one_setting_points_every_link_at_a_wiki() {
    let dir = TempDir::new("wiki");
    let rules = std::fs::read_to_string(deploy("prometheus/portwarden.rules.yml"))
        .expect("rules")
        .replacen(
            "url: \"\"",
            "url: \"https://wiki.example.com/portwarden\"",
            1,
        );
    std::fs::write(dir.0.join("portwarden.rules.yml"), rules).expect("rules");
    for entry in std::fs::read_dir(deploy("prometheus/tests")).expect("tests") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("name").to_owned();
        let text = std::fs::read_to_string(&path).expect("test").replace(
            "http://web1:9765/runbooks/",
            "https://wiki.example.com/portwarden/",
        );
        std::fs::write(dir.0.join(name), text).expect("test");
    }
    // rule_files name ../portwarden.rules.yml: run from a directory below.
    let tests = dir.0.join("tests");
    std::fs::create_dir(&tests).expect("dir");
    let mut args: Vec<String> = vec!["test".into(), "rules".into()];
    for entry in std::fs::read_dir(&dir.0).expect("dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yml")
            && path
                .file_name()
                .is_some_and(|n| n != "portwarden.rules.yml")
        {
            let to = tests.join(path.file_name().expect("name"));
            std::fs::rename(&path, &to).expect("move");
            args.push(to.display().to_string());
        }
    }
    assert!(args.len() > 3, "the test files");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = promtool(&args);
    assert!(!out.contains("FAILED"), "{out}");
}
