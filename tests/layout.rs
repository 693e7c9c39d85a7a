//! The crate's layout, read from its files: the rules a reviewer would
//! otherwise have to remember.
//!
//! - `value/` is a leaf: it names nothing else of the crate.
//! - `config.rs` names no feature module: only `value`.
//! - Only `discover/` (the platform seam) names a `/proc` or `/sys` path.
//! - Only `discover/` and `probe/` (the platform seam) hold a platform
//!   conditional (`cfg(target_os …)`, `cfg(windows)`, `cfg(unix)`,
//!   `target_env`, `target_family`) or names a platform's own interface
//!   (`std::os::unix`, `libc`, `rustix`, Unix signals): the engine,
//!   collectors, server and CLI ask `discover::os` and build unchanged for
//!   every platform.

use std::path::{Path, PathBuf};

fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The crate's modules a file names (`crate::x…` → `x`), outside comments.
fn crate_modules(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.push(name);
        }
    }
    out
}

#[test]
fn the_value_module_is_a_leaf() {
    let files = sources(&src().join("value"));
    assert!(files.len() >= 3, "value/ holds its modules: {files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        let named: Vec<String> = crate_modules(&text)
            .into_iter()
            .filter(|m| m != "value")
            .collect();
        assert!(named.is_empty(), "{} names {named:?}", file.display());
    }
}

#[test]
fn config_names_no_feature_module() {
    let text = std::fs::read_to_string(src().join("config.rs")).expect("read");
    let named: Vec<String> = crate_modules(&text)
        .into_iter()
        .filter(|m| m != "value")
        .collect();
    assert!(named.is_empty(), "config.rs names {named:?}");
}

#[test]
fn only_discover_names_proc_or_sys_paths() {
    let discover = src().join("discover");
    let mut found = Vec::new();
    for file in sources(&src()) {
        if file.starts_with(&discover) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for pattern in ["\"/proc", "\"/sys"] {
                if code.contains(pattern) {
                    found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "a /proc or /sys path outside discover/:\n{}",
        found.join("\n")
    );
}

/// Platform conditionals on a line of code (comments left out).
fn platform_cfgs(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        let Some(at) = code.find("cfg!(").or_else(|| code.find("cfg(")) else {
            continue;
        };
        let cond = &code[at..];
        if [
            "target_os",
            "windows",
            "unix",
            "target_env",
            "target_family",
        ]
        .iter()
        .any(|p| cond.contains(p))
        {
            out.push((n + 1, line.trim().to_string()));
        }
    }
    out
}

#[test]
fn platform_conditionals_live_in_the_platform_seam_only() {
    let seam = [src().join("discover"), src().join("probe")];
    let mut found = Vec::new();
    for file in sources(&src()) {
        if seam.iter().any(|d| file.starts_with(d)) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read");
        for (n, line) in platform_cfgs(&text) {
            found.push(format!("{}:{n}: {line}", file.display()));
        }
        // Nor a platform's own interfaces: they are asked of discover::os.
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for api in [
                "std::os::unix",
                "std::os::fd",
                "std::os::windows",
                "libc::",
                "rustix::",
                "signal::unix",
            ] {
                if code.contains(api) {
                    found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "a platform conditional outside discover/ and probe/:\n{}",
        found.join("\n")
    );
    // The seam itself has some: the rule above is not vacuous.
    let alloc = std::fs::read_to_string(src().join("discover/alloc.rs")).expect("read");
    assert!(!platform_cfgs(&alloc).is_empty());
}

#[test]
fn the_checks_can_fail() {
    assert_eq!(
        crate_modules(
            "use crate::engine::Snapshot; // crate::x\nlet a = crate::value::Proto::Tcp;"
        ),
        ["engine", "value"]
    );
    let found = platform_cfgs(
        "#[cfg(test)]\n#[cfg(all(target_os = \"linux\", target_env = \"gnu\"))]\n// cfg(windows)\nif cfg!(windows) {}",
    );
    assert_eq!(found.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [2, 4]);
}
