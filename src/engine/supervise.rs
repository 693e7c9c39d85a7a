//! Supervision: every long-lived thread and task of the engine is started
//! here and watched. One that ends or panics is reported; the caller marks
//! the exporter unhealthy and exits, so that systemd or Kubernetes restarts
//! it — a frozen `node_tcp_port_alive 1` behind a 200 is the worst failure
//! a liveness exporter can have.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use tokio::sync::mpsc;
use tokio::task::AbortHandle;

/// A thread or task that ended while it should have run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub name: &'static str,
    pub panicked: bool,
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = if self.panicked { "panicked" } else { "ended" };
        write!(f, "the {} {how}", self.name)
    }
}

/// Starts threads and tasks, and hears when one ends.
#[derive(Debug)]
pub struct Supervisor {
    tx: mpsc::UnboundedSender<Ended>,
    rx: mpsc::UnboundedReceiver<Ended>,
    tasks: Vec<AbortHandle>,
}

impl Supervisor {
    pub fn new() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Supervisor {
            tx,
            rx,
            tasks: Vec::new(),
        }
    }

    /// Starts a named thread; its end (return or panic) is reported.
    pub fn thread(
        &self,
        name: &'static str,
        body: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        self.spawn(name, true, body)
    }

    /// Starts a named thread that serves another (the baseline's writer
    /// serves the state's owner): its panic is reported; its return is
    /// not, for it returns when what it serves is gone (and that end is
    /// the one to report).
    pub fn helper(
        &self,
        name: &'static str,
        body: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        self.spawn(name, false, body)
    }

    /// A named thread whose panic is reported, and its return too when
    /// `returns_count`.
    fn spawn(
        &self,
        name: &'static str,
        returns_count: bool,
        body: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let tx = self.tx.clone();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let panicked = std::panic::catch_unwind(AssertUnwindSafe(body)).is_err();
                if panicked || returns_count {
                    let _ = tx.send(Ended { name, panicked });
                }
            })
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("the OS refused the {name} thread (RLIMIT_NPROC, TasksMax or a pids limit): {e}"),
                )
            })
    }

    /// Starts a named task on the current runtime; its end is reported
    /// (not its abort at [`Supervisor::abort_all`]).
    pub fn task(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task);
        self.tasks.push(handle.abort_handle());
        let tx = self.tx.clone();
        tokio::spawn(async move {
            match handle.await {
                Err(e) if e.is_cancelled() => {}
                result => {
                    let _ = tx.send(Ended {
                        name,
                        panicked: result.is_err(),
                    });
                }
            }
        });
    }

    /// The first thread or task to end.
    pub async fn ended(&mut self) -> Ended {
        match self.rx.recv().await {
            Some(ended) => ended,
            // We hold a sender: never.
            None => std::future::pending().await,
        }
    }

    /// Stops every task (at shutdown).
    pub fn abort_all(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

impl Default for Supervisor {
    fn default() -> Self {
        Supervisor::new()
    }
}

/// A fault a test build can be made to have, to test supervision.
#[derive(Debug, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Stop working here for good (until the engine stops).
    Stall,
    /// Fail this once, as the OS might (a call refused).
    Fail,
}

/// Debug (test) builds only: `PORTWARDEN_FAULT=panic:<point>` panics at
/// `point`, `stall:<point>` asks the caller to stall there, `fail:<point>`
/// to fail there; a third field waits for that visit to the point
/// (`stall:discovery:3` stalls from the third on, `panic:scrape:3` panics
/// at the third alone) — for `fail`, how many visits fail
/// (`fail:discovery:3`: the first three).
/// Release builds have no such hook.
pub fn fault(point: &str) -> Fault {
    #[cfg(debug_assertions)]
    if let Ok(spec) = std::env::var("PORTWARDEN_FAULT") {
        static VISITS: std::sync::Mutex<Vec<(String, u64)>> = std::sync::Mutex::new(Vec::new());
        let mut parts = spec.split(':');
        let (what, at, nth) = (parts.next(), parts.next(), parts.next());
        if at != Some(point) {
            return Fault::None;
        }
        let visit = {
            let mut visits = VISITS.lock().unwrap_or_else(|e| e.into_inner());
            let i = match visits.iter().position(|(p, _)| p == point) {
                Some(i) => i,
                None => {
                    visits.push((point.to_string(), 0));
                    visits.len() - 1
                }
            };
            visits[i].1 += 1;
            visits[i].1
        };
        let nth = nth.and_then(|n| n.parse::<u64>().ok()).unwrap_or(1);
        if what == Some("fail") {
            return if visit <= nth {
                Fault::Fail
            } else {
                Fault::None
            };
        }
        if nth > visit {
            return Fault::None;
        }
        match what {
            // That visit alone: a request handler lives on after it.
            Some("panic") if visit == nth => panic!("fault injected at {point}"),
            Some("stall") => return Fault::Stall,
            _ => {}
        }
    }
    let _ = point;
    Fault::None
}
