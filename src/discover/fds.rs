//! Our own file descriptors, a budget: every check, scrape and kept fd-table
//! handle takes one, and running out must never read as a port being down.

/// Raises the soft limit on open files to the hard limit, as Go's runtime
/// does since 1.19 (the common soft default, 1024, is easily outgrown by a
/// host's worth of checks and owners); returns the soft limit in force.
pub fn raise_limit() -> u64 {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let (Some(soft), hard) = (limit.current, limit.maximum) else {
        return u64::MAX;
    };
    let wanted = hard.unwrap_or(soft);
    if wanted > soft {
        let raised = rustix::process::Rlimit {
            current: Some(wanted),
            maximum: hard,
        };
        if rustix::process::setrlimit(rustix::process::Resource::Nofile, raised).is_ok() {
            return wanted;
        }
    }
    soft
}

/// Descriptors this process has open now (entries of `/proc/self/fd`:
/// our own, whatever `--path.procfs` says).
pub fn open_now() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

/// Descriptors kept for everything but checks: scrapes, discovery's netlink
/// sockets and kept fd-table handles, files.
pub const RESERVE: u64 = 128;

/// How many checks may be in flight at once when each takes up to
/// `per_check` descriptors, `open` are taken and [`RESERVE`] are kept aside;
/// at least one.
pub fn check_budget(limit: u64, open: usize, per_check: usize) -> usize {
    let free = limit.saturating_sub(open as u64 + RESERVE);
    usize::try_from(free / per_check.max(1) as u64)
        .unwrap_or(usize::MAX)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_leaves_the_reserve_and_never_reaches_zero() {
        assert_eq!(check_budget(1024, 40, 8), (1024 - 40 - 128) / 8);
        assert_eq!(check_budget(64, 20, 8), 1);
        assert_eq!(check_budget(u64::MAX, 10, 8), (u64::MAX - 138) as usize / 8);
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
        let soft = raise_limit();
        if let Some(hard) = hard {
            assert_eq!(soft, hard);
        }
    }
}
