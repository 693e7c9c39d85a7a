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

pub use super::budget::{RESERVE, check_budget};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
        let soft = raise_limit();
        if let Some(hard) = hard {
            assert_eq!(soft, hard);
        }
    }
}
