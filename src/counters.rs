//! Process-wide counters of what the server turned away or failed at: the
//! server adds to them, the state's owner reads them into each snapshot
//! with the process's other figures. Atomics, so a request never waits on
//! the engine and the engine never on a request.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Requests answered 503 at once because a budget was spent, by budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `--web.max-requests` (`/metrics`).
    Scrapes = 0,
    /// `--web.probe-concurrency` (`/probe`).
    Probes = 1,
    /// The status page's, API's and badges' renders in flight.
    Renders = 2,
}

impl Refused {
    pub const ALL: [Refused; 3] = [Refused::Scrapes, Refused::Probes, Refused::Renders];

    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Scrapes => "scrapes",
            Refused::Probes => "probes",
            Refused::Renders => "renders",
        }
    }
}

static REFUSED: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];
static PANICS: AtomicU64 = AtomicU64::new(0);

/// Counts a request turned away by `budget`.
pub fn refused(budget: Refused) {
    REFUSED[budget as usize].fetch_add(1, Relaxed);
}

/// Counts a request handler's panic, answered 500; the first is logged as
/// an error with its message, the rest at debug (a client repeating a
/// request that trips a bug must not flood the log).
pub fn handler_panicked(panic: &(dyn std::any::Any + Send)) {
    let n = PANICS.fetch_add(1, Relaxed);
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    if n == 0 {
        tracing::error!(
            panic = message,
            "a request's handler panicked: answered 500 (counted in portwarden_http_handler_panics_total; later ones are logged at debug)"
        );
    } else {
        tracing::debug!(
            panic = message,
            "a request's handler panicked: answered 500"
        );
    }
}

/// What the counters hold now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub handler_panics: u64,
    /// By [`Refused::ALL`]'s order.
    pub refused: [u64; 3],
}

pub fn now() -> Counts {
    Counts {
        handler_panics: PANICS.load(Relaxed),
        refused: REFUSED.each_ref().map(|c| c.load(Relaxed)),
    }
}
