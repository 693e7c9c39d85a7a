//! The deploy files under `deploy/` agree with each other and with the
//! binary: the image, the capabilities, the host /proc mount and
//! `PROC_PREFIX`, the port and paths the binary serves by default.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// The capabilities the README documents, and nothing more.
const CAPS: [&str; 4] = ["DAC_READ_SEARCH", "NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE"];

fn deploy(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(deploy(rel)).unwrap_or_else(|e| panic!("deploy/{rel}: {e}"))
}

fn yaml(rel: &str) -> Value {
    let docs: Vec<Value> = serde_saphyr::from_multiple(&read(rel))
        .unwrap_or_else(|e| panic!("deploy/{rel} is not YAML: {e}"));
    assert_eq!(docs.len(), 1, "deploy/{rel}: one document");
    docs.into_iter().next().expect("a document")
}

fn at<'a>(v: &'a Value, pointer: &str) -> &'a Value {
    v.pointer(pointer)
        .unwrap_or_else(|| panic!("{pointer} missing in {v}"))
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    at(v, pointer)
        .as_str()
        .unwrap_or_else(|| panic!("{pointer} is not a string"))
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .expect("a list")
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

/// What `portwarden serve --help` gives as the default of `flag`.
fn default_of(flag: &str) -> String {
    let out = run(&["serve", "--help"], &[]);
    let help = String::from_utf8(out.stdout).expect("utf-8");
    let text: String = help
        .split("\n      --")
        .find(|s| s.starts_with(flag))
        .unwrap_or_else(|| panic!("{flag} not in help"))
        .to_string();
    let start = text.find("[default: ").expect("a default") + "[default: ".len();
    text[start..text[start..].find(']').expect("]") + start].to_string()
}

/// The port of the binary's default listen address (`:9765`).
fn default_port() -> u16 {
    let addr = default_of("web.listen-address");
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port")
}

fn image() -> String {
    format!("portwarden:{}", env!("CARGO_PKG_VERSION"))
}

#[test]
fn daemonset_runs_the_image_with_the_hosts_proc_and_only_the_documented_capabilities() {
    let ds = yaml("kubernetes/daemonset.yaml");
    assert_eq!(str_at(&ds, "/kind"), "DaemonSet");
    let pod = at(&ds, "/spec/template/spec");
    assert_eq!(at(pod, "/hostPID"), &Value::Bool(true));
    assert_ne!(pod.get("hostNetwork"), Some(&Value::Bool(true)));
    let containers = at(pod, "/containers").as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(str_at(c, "/image"), image());

    let sc = at(c, "/securityContext");
    assert_eq!(
        strings(at(sc, "/capabilities/drop")),
        BTreeSet::from(["ALL".into()])
    );
    assert_eq!(
        strings(at(sc, "/capabilities/add")),
        CAPS.iter().map(|s| s.to_string()).collect()
    );
    assert_eq!(at(sc, "/allowPrivilegeEscalation"), &Value::Bool(false));
    assert_eq!(at(sc, "/readOnlyRootFilesystem"), &Value::Bool(true));
    assert_ne!(sc.get("privileged"), Some(&Value::Bool(true)));

    // PROC_PREFIX points at the host's /proc, mounted read-only.
    let env = at(c, "/env").as_array().expect("env");
    let prefix = env
        .iter()
        .find(|e| e["name"] == "PROC_PREFIX")
        .map(|e| str_at(e, "/value"))
        .expect("PROC_PREFIX set");
    let mount = at(c, "/volumeMounts")
        .as_array()
        .expect("mounts")
        .iter()
        .find(|m| m["mountPath"] == prefix)
        .expect("a mount at PROC_PREFIX");
    assert_eq!(at(mount, "/readOnly"), &Value::Bool(true));
    let volume = at(pod, "/volumes")
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the mount's volume");
    assert_eq!(str_at(volume, "/hostPath/path"), "/proc");
    // The baseline needs a writable state directory that outlives the pod.
    let state = at(c, "/volumeMounts")
        .as_array()
        .expect("mounts")
        .iter()
        .find(|m| m["mountPath"] == "/var/lib/portwarden")
        .expect("a state mount");
    assert_ne!(state.get("readOnly"), Some(&Value::Bool(true)));
    let volume = at(pod, "/volumes")
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == state["name"])
        .expect("the state volume");
    assert_eq!(str_at(volume, "/hostPath/path"), "/var/lib/portwarden");

    // The port the binary listens on by default, probed where it answers.
    let port = &at(c, "/ports").as_array().expect("ports")[0];
    assert_eq!(
        at(port, "/containerPort").as_u64(),
        Some(u64::from(default_port()))
    );
    let name = str_at(port, "/name");
    for probe in ["/livenessProbe", "/readinessProbe"] {
        assert_eq!(str_at(c, &format!("{probe}/httpGet/path")), "/-/healthy");
        assert_eq!(str_at(c, &format!("{probe}/httpGet/port")), name);
    }
    for kind in ["requests", "limits"] {
        for what in ["cpu", "memory"] {
            at(c, &format!("/resources/{kind}/{what}"));
        }
    }
}

#[test]
fn service_and_podmonitor_select_the_daemonsets_pods_on_its_port() {
    let ds = yaml("kubernetes/daemonset.yaml");
    let pod_labels = at(&ds, "/spec/template/metadata/labels");
    let port_name = str_at(&ds, "/spec/template/spec/containers/0/ports/0/name");

    let svc = yaml("kubernetes/service.yaml");
    assert_eq!(str_at(&svc, "/kind"), "Service");
    assert_eq!(at(&svc, "/spec/selector"), pod_labels);
    assert_eq!(
        at(&svc, "/spec/ports/0/port").as_u64(),
        Some(u64::from(default_port()))
    );
    assert_eq!(str_at(&svc, "/spec/ports/0/targetPort"), port_name);

    let pm = yaml("kubernetes/podmonitor.yaml");
    assert_eq!(str_at(&pm, "/kind"), "PodMonitor");
    assert_eq!(str_at(&pm, "/apiVersion"), "monitoring.coreos.com/v1");
    assert_eq!(at(&pm, "/spec/selector/matchLabels"), pod_labels);
    let endpoint = at(&pm, "/spec/podMetricsEndpoints/0");
    assert_eq!(str_at(endpoint, "/port"), port_name);
    assert_eq!(str_at(endpoint, "/path"), default_of("web.telemetry-path"));
    for doc in [&ds, &svc, &pm] {
        assert_eq!(
            str_at(doc, "/metadata/namespace"),
            str_at(&ds, "/metadata/namespace")
        );
    }
}

#[test]
fn compose_matches_the_daemonset() {
    let compose = yaml("compose/docker-compose.yml");
    let s = at(&compose, "/services/portwarden");
    assert_eq!(str_at(s, "/image"), image());
    assert_eq!(str_at(s, "/build/dockerfile"), "deploy/Dockerfile");
    assert_eq!(str_at(s, "/pid"), "host");
    assert_eq!(strings(at(s, "/cap_drop")), BTreeSet::from(["ALL".into()]));
    assert_eq!(
        strings(at(s, "/cap_add")),
        CAPS.iter().map(|s| s.to_string()).collect()
    );
    assert!(strings(at(s, "/security_opt")).contains("no-new-privileges:true"));
    let prefix = str_at(s, "/environment/PROC_PREFIX");
    assert!(strings(at(s, "/volumes")).contains(&format!("/proc:{prefix}:ro")));
    assert!(strings(at(s, "/volumes")).contains("/var/lib/portwarden:/var/lib/portwarden"));
    let port = default_port();
    assert!(strings(at(s, "/ports")).contains(&format!("{port}:{port}")));
    assert_eq!(at(s, "/read_only"), &Value::Bool(true));
    assert_eq!(at(s, "/ulimits/nofile/soft"), &Value::from(65536));
    assert_eq!(at(s, "/ulimits/nofile/hard"), &Value::from(65536));
}

#[test]
fn dockerfile_builds_a_static_binary_into_an_empty_image() {
    let text = read("Dockerfile");
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    // The build is deploy/build-static.sh, which CI runs and smoke-tests:
    // the image and CI cannot drift apart.
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("RUN bash deploy/build-static.sh /portwarden")),
        "{text}"
    );
    let script = read("build-static.sh");
    assert!(script.contains("--target \"$target\""), "{script}");
    assert!(
        script.contains("target=x86_64-unknown-linux-musl"),
        "{script}"
    );
    assert!(script.contains("musl-tools"), "{script}");
    assert_eq!(
        lines.iter().rfind(|l| l.starts_with("FROM ")),
        Some(&"FROM scratch")
    );
    assert!(lines.contains(&format!("EXPOSE {}", default_port()).as_str()));
    assert!(lines.contains(&"ENV PROC_PREFIX=/host/proc"));
    assert!(lines.contains(&r#"ENTRYPOINT ["/portwarden"]"#));
    // Every path it copies exists.
    for l in lines
        .iter()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let parts: Vec<&str> = l.split_whitespace().collect();
        for src in &parts[1..parts.len() - 1] {
            let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(src);
            assert!(p.exists(), "COPY {src}: not in the repository");
        }
    }
    // The image the other files run is the one the comment builds.
    assert!(text.contains(&format!("-t {}", image())));
}

fn unit_values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_string)
        .collect()
}

#[test]
fn systemd_unit_holds_only_the_documented_capabilities_and_is_what_cargo_deb_installs() {
    let unit = read("systemd/portwarden.service");
    let caps: BTreeSet<String> = CAPS.iter().map(|c| format!("CAP_{c}")).collect();
    for key in ["AmbientCapabilities", "CapabilityBoundingSet"] {
        let v = unit_values(&unit, key);
        assert_eq!(v.len(), 1, "{key}");
        let set: BTreeSet<String> = v[0].split_whitespace().map(str::to_string).collect();
        assert_eq!(set, caps, "{key}");
    }
    for (key, want) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("DynamicUser", "yes"),
        ("StateDirectory", "portwarden"),
        ("ExecStart", "/usr/bin/portwarden serve"),
        // Room for checks in flight and a kept fd-table handle per owner.
        ("LimitNOFILE", "65536"),
    ] {
        assert_eq!(unit_values(&unit, key), [want], "{key}");
    }
    // Hiding other processes would blind it.
    assert!(unit_values(&unit, "ProtectProc").is_empty());

    // cargo deb installs the binary where ExecStart runs it, and this unit.
    let manifest: String =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .expect("Cargo.toml");
    assert!(manifest.contains(r#"["target/release/portwarden", "usr/bin/", "755"]"#));
    assert!(manifest.contains(r#"unit-scripts = "deploy/systemd""#));
    assert!(manifest.contains(r#"unit-name = "portwarden""#));

    // Every setting the binary reads from the environment is in the
    // settings file the unit loads.
    let out = run(&["serve", "--help"], &[]);
    let help = String::from_utf8(out.stdout).expect("utf-8");
    let defaults = read("systemd/portwarden.default");
    for var in help
        .split("[env: ")
        .skip(1)
        .filter_map(|s| s.split('=').next())
    {
        assert!(
            defaults.contains(&format!("#{var}=")),
            "{var} missing from deploy/systemd/portwarden.default"
        );
    }

    // systemd itself accepts the unit (with ExecStart on our binary).
    let Some(analyze) = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
    else {
        cannot_run(
            "systemd-analyze verify: systemd-analyze not installed (apt-get install systemd)",
        );
        return;
    };
    let dir = TempDir::new("unit");
    let copy = dir.0.join("portwarden.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/bin/portwarden", bin().to_str().expect("utf-8 path")),
    )
    .expect("write unit");
    let out = std::process::Command::new(analyze)
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");
}
