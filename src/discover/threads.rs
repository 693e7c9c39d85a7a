//! Discovery's threads: at most [`MAX`] at once for one pass's parallel
//! work, and a thread the OS refuses (`RLIMIT_NPROC`, a unit's `TasksMax`,
//! a container's pids limit) is never a panic: the work it would have done
//! runs on the threads there are, the refusal is counted
//! (`portwarden_discovery_errors_total{reason="thread_refused"}`) and
//! logged once.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread::{Scope, ScopedJoinHandle};

/// The most threads one pass's parallel work uses, the calling thread
/// included, whatever the number of cores: past it, /proc reads contend in
/// the kernel more than they gain (and each thread is a task against the
/// unit's `TasksMax`).
pub const MAX: usize = 8;

static REFUSED: AtomicU64 = AtomicU64::new(0);
static LOGGED: AtomicBool = AtomicBool::new(false);

/// Threads to use on this host: one per core, at most [`MAX`].
pub fn default_count() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX)
}

/// Starts `f` on a thread of scope `s`; `None` when the OS refused one
/// (then `f` was dropped unrun).
pub fn spawn<'scope, T: Send + 'scope>(
    s: &'scope Scope<'scope, '_>,
    f: impl FnOnce() -> T + Send + 'scope,
) -> Option<ScopedJoinHandle<'scope, T>> {
    match std::thread::Builder::new()
        .name("discovery-work".into())
        .spawn_scoped(s, f)
    {
        Ok(handle) => Some(handle),
        Err(e) => {
            refused(&e);
            None
        }
    }
}

/// Counts a refused thread, and logs the first.
pub fn refused(e: &std::io::Error) {
    REFUSED.fetch_add(1, Relaxed);
    if !LOGGED.swap(true, Relaxed) {
        tracing::warn!(
            error = %e,
            "the OS refused discovery a thread (RLIMIT_NPROC, TasksMax or a pids limit): its work runs on fewer threads; counted in portwarden_discovery_errors_total{{reason=\"thread_refused\"}}, logged once"
        );
    }
}

/// Threads refused since the last call.
pub fn take_refused() -> u64 {
    REFUSED.swap(0, Relaxed)
}

/// `f` of every job, each job on a thread of its own where the OS gives
/// one and on the calling thread otherwise; results in the jobs' order.
pub fn run_all<T: Send, R: Send>(jobs: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let slots: Vec<Mutex<Option<T>>> = jobs.into_iter().map(|j| Mutex::new(Some(j))).collect();
    // Whoever takes a job first runs it: its thread, or this one after.
    let take = |slot: &Mutex<Option<T>>| slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    std::thread::scope(|s| {
        let (f, take) = (&f, &take);
        let handles: Vec<_> = slots
            .iter()
            .skip(1)
            .map(|slot| spawn(s, move || take(slot).map(f)))
            .collect();
        let mut out = Vec::with_capacity(slots.len());
        out.extend(slots.first().and_then(take).map(f));
        for (slot, handle) in slots.iter().skip(1).zip(handles) {
            let ran = handle.and_then(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            });
            out.extend(ran.or_else(|| take(slot).map(f)));
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_job_runs_once_in_order() {
        let out = run_all((0..20).collect(), |n: u32| n * 2);
        assert_eq!(out, (0..20).map(|n| n * 2).collect::<Vec<_>>());
        assert!(default_count() >= 1 && default_count() <= MAX);
    }
}
