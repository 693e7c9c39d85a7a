//! How many checks may be in flight: each takes descriptors (handles on
//! Windows) of our own, and running out must never read as a port being
//! down. Pure; the limit and what is open come from [`super::fds`].

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
}
