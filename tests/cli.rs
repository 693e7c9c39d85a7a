//! What a Rust CLI ships beside the binary: shell completions that load and
//! manual pages that render (the .deb installs both; `deploy/check-deb.sh`).

mod common;

use std::process::Command;

use common::*;

fn output(args: &[&str]) -> String {
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("run portwarden");
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn bash_completion_loads_and_completes_commands_and_flags() {
    let dir = TempDir::new("completions");
    let script = dir.0.join("portwarden.bash");
    std::fs::write(&script, output(&["completions", "bash"])).expect("write");
    // Load it, then ask it what follows `portwarden l` and `portwarden ls --ch`.
    let probe = r#"
source "$1" || exit 3
complete -p portwarden || exit 4
complete_with() { COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; COMPREPLY=(); _portwarden portwarden "${COMP_WORDS[-1]}" "${COMP_WORDS[-2]}"; echo "${COMPREPLY[*]}"; }
complete_with portwarden l
complete_with portwarden ls --ch
"#;
    let out = Command::new("bash")
        .args(["-c", probe, "probe"])
        .arg(&script)
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].contains("complete") && lines[0].ends_with("portwarden"),
        "{stdout}"
    );
    assert!(lines[1].split(' ').any(|w| w == "ls"), "{stdout}");
    assert!(lines[2].split(' ').any(|w| w == "--check"), "{stdout}");
}

#[test]
fn every_shell_gets_a_script_and_an_unknown_one_is_a_usage_error() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = output(&["completions", shell]);
        assert!(
            script.contains("portwarden") && script.contains("port.status-interval"),
            "{shell}"
        );
    }
    let out = Command::new(bin())
        .args(["completions", "tcsh"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tcsh") && stderr.contains("bash"),
        "{stderr}"
    );
}

#[test]
fn manual_pages_render_with_man() {
    let Some(man) = ["/usr/bin/man", "/bin/man"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        cannot_run("man not installed (apt-get install man-db; .ci/run does)");
        return;
    };
    let dir = TempDir::new("man");
    for (page, args, want) in [
        ("portwarden.1", &["man"][..], "PORT_STATUS_INTERVAL"),
        ("portwarden-ls.1", &["man", "ls"][..], "--check"),
        (
            "portwarden-serve.1",
            &["man", "serve"][..],
            "HTTP_DETECTION_CONCURRENCY",
        ),
        ("portwarden-baseline.1", &["man", "baseline"][..], "accept"),
        (
            "portwarden-check.1",
            &["man", "check"][..],
            "--modules.file",
        ),
        ("portwarden-why.1", &["man", "why"][..], "fault tree"),
    ] {
        let path = dir.0.join(page);
        std::fs::write(&path, output(args)).expect("write");
        let out = Command::new(man)
            .args(["-l", "-P", "cat"])
            .arg(&path)
            .env("MANWIDTH", "100")
            .output()
            .expect("run man");
        let text = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{page}: {stderr}");
        assert!(stderr.trim().is_empty(), "{page} warns: {stderr}");
        let name = page.trim_end_matches(".1");
        assert!(
            text.contains("NAME") && text.contains(name),
            "{page}:\n{text}"
        );
        assert!(text.contains(want), "{want} not in {page}:\n{text}");
    }
}
