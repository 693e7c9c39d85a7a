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
//!
//! And which systemd unit it runs in ([`unit`]), by systemd's own rules.

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

/// A process's systemd unit, as its cgroup path names it. Names are kept
/// exact (systemd's `\xNN` escapes and all), as labels need them; [`Unit::display`]
/// decodes them for people.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Unit {
    /// The system unit: `nginx.service`, `session-2.scope`, or the user's
    /// manager (`user@1000.service`) for anything a user's manager runs.
    pub system: String,
    /// The unit inside a user's manager (`user@UID.service`, `capsule@….service`).
    pub user: Option<String>,
}

impl Unit {
    /// The innermost unit: the user's unit when there is one.
    pub fn name(&self) -> &str {
        self.user.as_deref().unwrap_or(&self.system)
    }

    /// A scope: a unit systemd did not start but registered (a login
    /// session, a container, `init.scope`).
    pub fn is_transient(&self) -> bool {
        self.name().ends_with(".scope")
    }

    /// The service manager's own scope (PID 1's, or a user manager's).
    pub fn is_manager(&self) -> bool {
        self.name() == "init.scope"
    }

    /// For people: escapes decoded, a user's unit followed by its manager
    /// (`vite.service (user@1000)`).
    pub fn display(&self) -> String {
        match &self.user {
            Some(user) => format!(
                "{} ({})",
                unescape(user),
                unescape(self.system.strip_suffix(".service").unwrap_or(&self.system))
            ),
            None => unescape(&self.system),
        }
    }
}

/// As JSON: `{"name", "system", "user", "display", "transient"}` (names exact).
impl serde::Serialize for Unit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut u = s.serialize_struct("Unit", 5)?;
        u.serialize_field("name", self.name())?;
        u.serialize_field("system", &self.system)?;
        u.serialize_field("user", &self.user)?;
        u.serialize_field("display", &self.display())?;
        u.serialize_field("transient", &self.is_transient())?;
        u.end()
    }
}

/// Finds the systemd unit named by a cgroup file's text, as systemd does
/// (`cg_path_get_unit`, `cg_path_get_user_unit`): systemd's hierarchy
/// (`name=systemd` on v1 and hybrid hosts, else the `0::` line), leading
/// `*.slice` components skipped; a user's manager entered and its slices
/// skipped. `None` for the root cgroup, a kernel thread, or a path that is
/// not systemd's (`/docker/<id>` under cgroupfs). Pure.
pub fn unit(text: &str) -> Option<Unit> {
    let line = |wanted: &dyn Fn(&str, &str) -> bool| {
        text.lines().find_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (hierarchy, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            wanted(hierarchy, controllers).then_some(path)
        })
    };
    let named = line(&|_, c| c == "name=systemd");
    let unified = line(&|h, c| h == "0" && c.is_empty());
    let path = [named, unified]
        .into_iter()
        .flatten()
        .find(|p| p.split('/').any(|s| !s.is_empty()))?;
    let mut segments = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(unescape_cgroup);
    let system = segments.by_ref().find(|s| !s.ends_with(".slice"))?;
    if !valid_unit_name(system) {
        return None;
    }
    let manager = ["user@", "capsule@"]
        .iter()
        .any(|p| system.starts_with(p) && system.ends_with(".service"));
    let user = manager
        .then(|| segments.find(|s| !s.ends_with(".slice")))
        .flatten()
        .filter(|u| valid_unit_name(u));
    Some(Unit {
        system: system.to_string(),
        user: user.map(str::to_string),
    })
}

/// systemd prefixes a cgroup name with `_` when the unit name would clash
/// with the kernel's own files (`cg_escape`); the name is what follows.
fn unescape_cgroup(segment: &str) -> &str {
    segment.strip_prefix('_').unwrap_or(segment)
}

const UNIT_TYPES: [&str; 11] = [
    "service",
    "socket",
    "target",
    "device",
    "mount",
    "automount",
    "swap",
    "timer",
    "path",
    "slice",
    "scope",
];

/// systemd's unit name: a non-empty name of `[A-Za-z0-9:_.\\-]` (one `@`
/// for a template's instance) and a known type, 255 bytes at most.
fn valid_unit_name(name: &str) -> bool {
    let Some((stem, kind)) = name.rsplit_once('.') else {
        return false;
    };
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b":_.\\-".contains(&b);
    name.len() <= 255
        && !stem.is_empty()
        && !stem.starts_with('@')
        && UNIT_TYPES.contains(&kind)
        && stem.bytes().filter(|&b| b == b'@').count() <= 1
        && stem.bytes().all(|b| allowed(b) || b == b'@')
}

/// Decodes systemd's `\xNN` escapes (`demo@a\x2db.service` → `demo@a-b.service`);
/// bytes that are not UTF-8 are shown as U+FFFD.
pub fn unescape(name: &str) -> String {
    if !name.contains("\\x") {
        return name.to_string();
    }
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 2..i + 4).and_then(|h| {
            let h = std::str::from_utf8(h).ok()?;
            u8::from_str_radix(h, 16).ok()
        });
        match (bytes[i], bytes.get(i + 1), hex) {
            (b'\\', Some(b'x'), Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, ..) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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

    fn unit_of(path: &str) -> Option<Unit> {
        unit(&format!("0::{path}\n"))
    }

    fn system(name: &str) -> Option<Unit> {
        Some(Unit {
            system: name.into(),
            user: None,
        })
    }

    #[test]
    fn system_units_after_their_slices() {
        assert_eq!(
            unit_of("/system.slice/nginx.service"),
            system("nginx.service")
        );
        assert_eq!(
            unit_of("/system.slice/system-demo.slice/demo@a\\x2db.service"),
            system("demo@a\\x2db.service")
        );
        assert_eq!(unit_of("/init.scope"), system("init.scope"));
        assert_eq!(
            unit_of("/user.slice/user-1000.slice/session-2.scope"),
            system("session-2.scope")
        );
        let docker = format!("docker-{ID}.scope");
        assert_eq!(unit_of(&format!("/system.slice/{docker}")), system(&docker));
        // A service's own sub-cgroups (Delegate=yes) belong to it.
        assert_eq!(
            unit_of("/system.slice/containerd.service/sub/leaf"),
            system("containerd.service")
        );
        // A cgroup name systemd prefixed with `_`.
        assert_eq!(
            unit_of("/system.slice/_tasks.service"),
            system("tasks.service")
        );
    }

    #[test]
    fn user_units_inside_their_manager() {
        let u = unit_of("/user.slice/user-1000.slice/user@1000.service/app.slice/vite.service")
            .expect("a unit");
        assert_eq!(u.system, "user@1000.service");
        assert_eq!(u.user.as_deref(), Some("vite.service"));
        assert_eq!(u.name(), "vite.service");
        assert_eq!(u.display(), "vite.service (user@1000)");
        assert!(!u.is_transient());
        let m =
            unit_of("/user.slice/user-1000.slice/user@1000.service/init.scope").expect("a unit");
        assert!(m.is_manager() && m.is_transient());
        let c = unit_of("/system.slice/capsule@x.service/app.slice/a.service").expect("a unit");
        assert_eq!(
            (c.system.as_str(), c.name()),
            ("capsule@x.service", "a.service")
        );
        // The manager's own cgroup, no unit below it.
        let bare = unit_of("/user.slice/user-1000.slice/user@1000.service").expect("a unit");
        assert_eq!(
            (bare.name(), bare.user.as_deref()),
            ("user@1000.service", None)
        );
    }

    #[test]
    fn the_systemd_hierarchy_before_the_unified_one() {
        let hybrid =
            "9:name=systemd:/system.slice/a.service\n4:memory:/x\n0::/system.slice/b.service\n";
        assert_eq!(unit(hybrid), system("a.service"));
        // Moved only in the unified hierarchy: systemd's v1 one is at its root.
        let moved = "9:name=systemd:/\n0::/system.slice/b.service\n";
        assert_eq!(unit(moved), system("b.service"));
        let v1 = "9:name=systemd:/system.slice/c.service\n";
        assert_eq!(unit(v1), system("c.service"));
    }

    #[test]
    fn no_unit() {
        for text in [
            "0::/\n",
            "9:name=systemd:/\n0::/\n",
            "",
            "garbage",
            "4:memory:/process_api/93682b47c9b165650be77ed6230e5c97\n0::/\n",
            "0::/process_api/93682b47c9b165650be77ed6230e5c97\n",
            &format!("0::/docker/{ID}\n"),
            "0::/user.slice\n",
            "0::/system.slice/no type\n",
            "0::/system.slice/x.unknown\n",
            "0::/system.slice/.service\n",
        ] {
            assert_eq!(unit(text), None, "{text:?}");
        }
    }

    #[test]
    fn escapes_decoded_for_display_only() {
        let u = unit_of("/system.slice/demo@a\\x2db\\x20\\xc3\\xbc.service").expect("a unit");
        assert_eq!(u.system, "demo@a\\x2db\\x20\\xc3\\xbc.service");
        assert_eq!(u.display(), "demo@a-b \u{fc}.service");
        assert_eq!(unescape("bad\\x2"), "bad\\x2");
        assert_eq!(unescape("\\xff"), "\u{fffd}");
    }
}
