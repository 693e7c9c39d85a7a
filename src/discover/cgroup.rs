//! Which container a process runs in, from its cgroup path
//! (`/proc/<pid>/cgroup`). Runtimes name the cgroup after the container's
//! 64-hex id:
//!
//! - Docker: `/docker/<id>` (cgroupfs) or `/system.slice/docker-<id>.scope` (systemd)
//! - containerd / CRI: `.../cri-containerd-<id>.scope`, or `/kubepods/<qos>/pod<uid>/<id>`
//! - CRI-O: `.../crio-<id>.scope`; Podman: `.../libpod-<id>.scope`
//!
//! Kubernetes adds the pod's uid (`pod<uid>`, with `_` for `-` under
//! systemd). A path that names no 64-hex id is no container.

/// A process's container, as its cgroup names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// The short id (12 hex characters), as `docker ps` shows it.
    pub id: String,
    /// The Kubernetes pod uid, when the path is a kubepods one.
    pub pod_uid: Option<String>,
}

/// A cgroup path that has a container runtime's shape but no id we can
/// read (a truncated or unknown id): counted, and the namespace keeps its
/// `netns:<inode>` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unrecognized;

/// Finds the container named by a cgroup file's text. Pure.
pub fn parse(text: &str) -> Result<Option<Container>, Unrecognized> {
    let paths = || {
        // `hierarchy:controllers:path`; the path may itself hold colons.
        text.lines().filter_map(|line| line.splitn(3, ':').nth(2))
    };
    let found = paths().find_map(|path| {
        let id = path.split('/').rev().find_map(container_id)?;
        let pod_uid = path
            .contains("kubepods")
            .then(|| path.split('/').find_map(pod_uid))
            .flatten();
        Some(Container {
            id: id[..12].to_string(),
            pod_uid,
        })
    });
    match found {
        Some(c) => Ok(Some(c)),
        None if paths().any(runtime_shaped) => Err(Unrecognized),
        None => Ok(None),
    }
}

/// Whether a path looks like a container's cgroup: a runtime's scope
/// (`docker-….scope`), a child of `/docker/`, or a container under a
/// Kubernetes pod. `docker.service` (the daemon itself) is not one.
fn runtime_shaped(path: &str) -> bool {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let scope = segments.iter().any(|s| {
        s.strip_suffix(".scope")
            .is_some_and(|s| RUNTIME_PREFIXES.iter().any(|p| s.starts_with(p)))
    });
    let under = |parent: &dyn Fn(&str) -> bool| {
        segments
            .windows(2)
            .any(|w| parent(w[0]) && !w[1].ends_with(".slice"))
    };
    scope
        || under(&|s| s == "docker")
        || (path.contains("kubepods") && under(&|s| pod_uid(s).is_some()))
}

const RUNTIME_PREFIXES: [&str; 5] = [
    "docker-",
    "cri-containerd-",
    "crio-",
    "libpod-",
    "containerd-",
];

fn container_id(segment: &str) -> Option<&str> {
    let s = segment.strip_suffix(".scope").unwrap_or(segment);
    let s = RUNTIME_PREFIXES
        .iter()
        .find_map(|p| s.strip_prefix(p))
        .unwrap_or(s);
    (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then_some(s)
}

fn pod_uid(segment: &str) -> Option<String> {
    let s = segment.strip_suffix(".slice").unwrap_or(segment);
    let uid = &s[s.rfind("pod")? + 3..];
    let uid = uid.replace('_', "-");
    let ok = uid.len() == 36 && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    ok.then_some(uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00112233445566778899";

    #[test]
    fn docker_both_drivers() {
        let want = Some(Container {
            id: "3f4e5d6c7b8a".into(),
            pod_uid: None,
        });
        let want = Ok(want);
        assert_eq!(parse(&format!("12:memory:/docker/{ID}\n0::/\n")), want);
        assert_eq!(
            parse(&format!("0::/system.slice/docker-{ID}.scope\n")),
            want
        );
        assert_eq!(
            parse(&format!("0::/machine.slice/libpod-{ID}.scope/container\n")),
            want
        );
        assert_eq!(parse(&format!("0::/system.slice/crio-{ID}.scope\n")), want);
    }

    #[test]
    fn kubernetes_pods() {
        let uid = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0";
        let cgroupfs = format!("4:cpu:/kubepods/burstable/pod{uid}/{ID}\n");
        let systemd = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{ID}.scope\n",
            uid.replace('-', "_")
        );
        for text in [cgroupfs, systemd] {
            let c = parse(&text).ok().flatten().expect("a container");
            assert_eq!(c.id, "3f4e5d6c7b8a");
            assert_eq!(c.pod_uid.as_deref(), Some(uid));
        }
    }

    #[test]
    fn no_container() {
        for text in [
            "0::/\n",
            "0::/user.slice/user-1000.slice/session-2.scope\n",
            // A 32-hex path (this very sandbox's) is not a container id.
            "4:memory:/process_api/93682b47c9b165650be77ed6230e5c97\n",
            // The daemons themselves.
            "0::/system.slice/docker.service\n",
            "0::/system.slice/containerd.service\n",
            "0::/kubepods.slice/kubepods-burstable.slice\n",
            "garbage",
            "",
        ] {
            assert_eq!(parse(text), Ok(None), "{text:?}");
        }
    }

    #[test]
    fn a_runtime_path_without_a_readable_id_is_unrecognized() {
        let uid = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0";
        for text in [
            format!("0::/docker/{}\n", &ID[..63]),
            format!("0::/system.slice/docker-{}.scope\n", &ID[..20]),
            "0::/machine.slice/libpod-conmon-xyz.scope\n".to_string(),
            format!("4:cpu:/kubepods/burstable/pod{uid}/not-an-id\n"),
        ] {
            assert_eq!(parse(&text), Err(Unrecognized), "{text:?}");
        }
    }
}
