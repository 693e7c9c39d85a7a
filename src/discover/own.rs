//! Portwarden's own process and host, as the exporter reports them: its
//! `process_*` figures (from our own /proc: under `--path.procfs` the
//! host's /proc knows us by another pid) and the host's name.

use super::procfs;

pub use super::Figures;

/// Reads our own figures; `None` when our own stat cannot be read.
pub fn figures() -> Option<Figures> {
    let stat = procfs::parse_stat(&std::fs::read("/proc/self/stat").ok()?)?;
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let page = rustix::param::page_size() as f64;
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("btime ")
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
        })
        .unwrap_or(0.0);
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    Some(Figures {
        cpu_seconds: (stat.utime + stat.stime) as f64 / ticks,
        resident_bytes: stat.rss_pages as f64 * page,
        virtual_bytes: stat.vsize as f64,
        open_fds: super::fds::open_now() as f64,
        max_fds: limit.current.map_or(f64::INFINITY, |v| v as f64),
        start_time_seconds: boot + stat.start_time as f64 / ticks,
    })
}

/// This host's name (the UTS namespace we run in), or `localhost`.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn our_own_figures_are_read() {
        let f = super::figures().expect("our own stat");
        assert!(f.resident_bytes > 0.0 && f.open_fds >= 3.0 && f.start_time_seconds > 0.0);
        assert!(!super::host_name().is_empty());
    }
}
