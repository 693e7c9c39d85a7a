//! The engine: discover → check → one owner of the state → immutable
//! snapshot. Nothing here runs on the scrape path, and nothing flows back.
//!
//! - [`discovery`]: a thread rediscovers the ports (blocking /proc and
//!   netlink work) and checks owner liveness.
//! - [`rounds`]: async probe rounds (TCP, HTTP) read their jobs from the
//!   latest snapshot, with one global cap on checks in flight.
//! - [`target_checks`]: the targets file's checks, each at its interval,
//!   within the same cap ([`targets`] is their part of the state).
//! - [`state`]: the reducer. Its owner, a thread of its own, is the only
//!   code that changes it: discovery passes and check results come to it
//!   as messages; after a pass, a round or an owner check it publishes a
//!   new [`Snapshot`].
//! - [`snapshot`]: what is published, and the store readers take it from.
//! - [`supervise`]: every thread and task is watched; one that ends or
//!   panics makes `/-/healthy` fail and the process exit with status 1.

mod baseline;
pub use baseline::BaselinePlace;
mod discovery;
mod events;
pub use events::EventsView;
pub mod history;
mod http_class;
mod inbox;
mod recovery;
mod rounds;
mod snapshot;
mod state;
pub mod supervise;
mod target_checks;
mod targets;

use std::sync::Arc;

use tokio::sync::{Semaphore, watch};

pub use http_class::HttpClass;
pub use snapshot::{
    BaselineView, ConnSummary, DURATION_BUCKETS, PortCheck, PortSeries, ProbeStats, ProcessSeries,
    RecoveryStats, SelfProcess, Shared, Snapshot, SocketInfo, Telemetry,
};
pub use state::{Limits, Msg, State};
pub use supervise::Ended;
pub use targets::{Reloads, TargetLast, TargetSeries};

use self::discovery::Wake;
use self::inbox::{Inbox, Outbox};
use self::supervise::Supervisor;
use crate::config::Settings;
use crate::discover::Discoverer;
use crate::probe::check::Destinations;
use crate::targets::files::{Files, InForce};

/// The running engine: its shared view, its watched threads and tasks.
pub struct Engine {
    pub shared: Arc<Shared>,
    supervisor: Supervisor,
    wake: Arc<Wake>,
    owner: Outbox,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// What the exporter starts with besides its flags, loaded (and refused
/// with the setting's name, status 2) before the engine starts.
pub struct Loaded {
    /// The targets and modules in force.
    pub by_list: InForce,
    /// `--actions.file`.
    pub actions: Option<crate::actions::Actions>,
    /// Where the baseline is kept, and the ports it never calls unexpected.
    pub baseline: BaselinePlace,
    /// `--events.output`, opened: the owner's end and the writer's.
    pub events: Option<(crate::events::output::Handle, crate::events::output::Writer)>,
}

impl Engine {
    /// Starts the state's owner and discovery (threads of their own) and
    /// the probe rounds (tasks on the current tokio runtime); `by_list`
    /// are the targets and modules loaded at the start.
    pub fn start(
        settings: Settings,
        discoverer: Discoverer,
        loaded: Loaded,
    ) -> std::io::Result<Engine> {
        let Loaded {
            by_list,
            actions,
            baseline,
            events,
        } = loaded;
        let every = settings.discovery_interval();
        let shared = Arc::new(Shared::new(settings.collectors(), every * 3));
        let wake = Arc::new(Wake::default());
        let mut supervisor = Supervisor::new();
        let (owner, inbox) = inbox::channel(inbox::CAPACITY);
        let state = State::new(Limits {
            retention: settings.retention,
            max_ports: settings.max_ports,
            http_period: settings.http_interval(),
            http_longest: settings.label_interval,
            counting_connections: discoverer.counts_connections(),
            collectors: settings.collectors(),
            check_every: every,
            target_interval: settings.targets_interval,
        });
        let (baseline, writer) = match settings.collectors().baseline {
            true => baseline::BaselineState::open(&settings, baseline).unzip(),
            false => (None, None),
        };
        // The file's own thread, not joined at the end: a disk that hangs
        // holds it alone (it ends when the owner does).
        if let Some(writer) = writer {
            let owner = owner.clone();
            supervisor.helper("baseline writer", move || writer.run(&owner))?;
        }
        // The events' writer: a thread of its own, like the baseline's.
        let (mut out, events_writer) = events.unzip();
        if let Some(writer) = events_writer {
            let asked = out.as_ref().is_some_and(|o| o.output);
            match supervisor.helper("events writer", move || writer.run()) {
                Ok(_) => {}
                // Only the record in the state directory wanted it: go on
                // without the record rather than not start.
                Err(e) if !asked => {
                    tracing::warn!(
                        "no thread for the record of port changes ({e}): `portwarden why` will not know when a port closed"
                    );
                    out = None;
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(reopen) = out.as_ref().map(|o| o.reopen.clone()) {
            supervisor.task("events file reopener", reopen_on_hangup(reopen));
        }
        let events = events::EventsState::new(settings.events_recent, out);
        let settings = Arc::new(settings);
        let _ = owner.send(Msg::Targets(by_list));
        // The owner hands each snapshot to the encoder, which publishes it
        // once the body Prometheus asks for is ready.
        let (made, to_encode) = watch::channel(shared.snapshot());
        let mut threads = Vec::new();
        threads.push({
            let wake = wake.clone();
            supervisor.thread("state owner", move || {
                own(state, baseline, events, &inbox, &made, &wake);
            })?
        });
        threads.push({
            let (shared, wake, owner, settings) = (
                shared.clone(),
                wake.clone(),
                owner.clone(),
                settings.clone(),
            );
            supervisor.thread("discovery", move || {
                discovery::run(&settings, discoverer, &shared, &owner, &wake);
            })?
        });
        // The cap on checks in flight, shared by the host's own checks (the
        // rounds, the targets); `/probe` has a budget of its own.
        let global = Arc::new(Semaphore::new(settings.probe_concurrency));
        // A target an operator wrote is connected to as written; a redirect
        // is checked against the deny list.
        let destinations = Arc::new(Destinations {
            deny: settings.probe_deny.0.clone(),
            ..Destinations::default()
        });
        shared.watch_rounds("tcp", settings.status_interval);
        supervisor.task(
            "TCP rounds",
            rounds::run(
                rounds::tcp(&settings, &owner),
                settings.spread,
                shared.clone(),
                owner.clone(),
                global.clone(),
            ),
        );
        if settings.http_detection {
            shared.watch_rounds("http", settings.http_interval());
            supervisor.task(
                "HTTP rounds",
                rounds::run(
                    rounds::http(&settings, &owner),
                    settings.spread,
                    shared.clone(),
                    owner.clone(),
                    global.clone(),
                ),
            );
        }
        shared.watch_scheduler(target_checks::NAME, settings.targets_interval);
        supervisor.task(
            "target checks",
            target_checks::run(
                shared.clone(),
                owner.clone(),
                global.clone(),
                settings.targets_interval,
                settings.targets_timeout,
                destinations.clone(),
            ),
        );
        let files = Files::of(&settings);
        let reloaded = owner.clone();
        supervisor.task(
            "targets file watcher",
            crate::targets::files::watch(files, move |loaded| {
                reloaded.post_later(match loaded {
                    Ok(in_force) => Msg::Targets(in_force),
                    Err(_) => Msg::TargetsReloadFailed,
                });
            }),
        );
        if let Some(actions) = actions {
            let (reloaded, reloads) = tokio::sync::mpsc::unbounded_channel();
            let path = settings.actions_file.clone();
            supervisor.task(
                "actions file watcher",
                crate::reload::watch(
                    "recovery actions",
                    {
                        let paths: Vec<_> = path.iter().cloned().collect();
                        move || paths.clone()
                    },
                    false,
                    move || {
                        path.as_deref().map_or(
                            Ok(crate::actions::Actions::default()),
                            crate::actions::Actions::load,
                        )
                    },
                    {
                        let owner = owner.clone();
                        move |loaded| match loaded {
                            Ok(new) => {
                                let _ = reloaded.send(new);
                            }
                            // Kept out (what is in force stays), counted.
                            Err(_) => {
                                owner.post_later(Msg::ActionsReloadFailed);
                            }
                        }
                    },
                ),
            );
            supervisor.task(
                "recovery actions",
                recovery::run(
                    shared.clone(),
                    owner.clone(),
                    reloads,
                    actions,
                    settings.actions_dry_run,
                    destinations,
                ),
            );
        }
        supervisor.task("encoder", encode_and_publish(to_encode, shared.clone()));
        Ok(Engine {
            shared,
            supervisor,
            wake,
            owner,
            threads,
        })
    }

    /// Watches one more long-lived task of the exporter's.
    pub fn supervise(
        &mut self,
        name: &'static str,
        task: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        self.supervisor.task(name, task);
    }

    /// The first watched thread or task to end (none should before
    /// [`Engine::stop`]). It is logged, and `/-/healthy` names it from now on.
    pub async fn failed(&mut self) -> Ended {
        let ended = self.supervisor.ended().await;
        tracing::error!(
            "{ended}: the exporter stops (status 1) so that its supervisor restarts it"
        );
        self.shared.fail(ended.to_string());
        ended
    }

    /// Stops everything and waits for the threads.
    pub fn stop(mut self) {
        self.supervisor.abort_all();
        self.wake.stop();
        let _ = self.owner.send(Msg::Stop);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// The state's owner: applies each message and makes a snapshot after
/// every pass, round and owner check. It does no I/O: the baseline file
/// has a writer of its own, which it hands what it learns.
fn own(
    mut state: State,
    mut baseline: Option<baseline::BaselineState>,
    mut events: events::EventsState,
    inbox: &Inbox,
    made: &watch::Sender<Arc<Snapshot>>,
    wake: &Wake,
) {
    while let Ok(msg) = inbox.recv() {
        let mut discovered = matches!(msg, Msg::Discovered { .. });
        let publish = match msg {
            Msg::Stop => return,
            Msg::Tcp { .. } | Msg::Http { .. } | Msg::Target { .. } => false,
            _ => true,
        };
        if let Msg::Discovered { pass, .. } = &msg {
            events.observe(pass);
        }
        let msg = match msg {
            Msg::BaselineRead(read) => {
                if let Some(b) = baseline.as_mut() {
                    b.read(*read);
                    discovered = true;
                }
                Msg::Publish
            }
            msg => msg,
        };
        if state.apply(msg) {
            wake.refresh();
        }
        if discovered && let Some(b) = baseline.as_mut() {
            state.baseline = Some(Arc::new(b.observe(&state.present_ports())));
        }
        if publish {
            supervise::fault("owner");
            state.queue_full = inbox.full_total();
            state.events = events.view();
            made.send_replace(Arc::new(state.snapshot(SelfProcess::read())));
        }
    }
}

/// Sets `reopen` on each SIGHUP: the events file is opened again (after
/// logrotate renamed it). SIGHUP is heard as every reloader hears it.
async fn reopen_on_hangup(reopen: Arc<std::sync::atomic::AtomicBool>) {
    let mut triggers = crate::reload::Triggers::start();
    loop {
        if triggers.next().await {
            reopen.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Encodes each new snapshot in every variant scrapers have asked for
/// (OpenMetrics with gzip, as Prometheus asks by default, from the start),
/// then publishes it: a scrape finds its body ready, and the encoding holds
/// no lock, runs on no async worker, and keeps the owner waiting for
/// nothing. Only the latest snapshot is encoded when several came while
/// one was.
async fn encode_and_publish(mut made: watch::Receiver<Arc<Snapshot>>, shared: Arc<Shared>) {
    while made.changed().await.is_ok() {
        let snapshot = Arc::clone(&made.borrow_and_update());
        let shared = shared.clone();
        let done = tokio::task::spawn_blocking(move || {
            supervise::fault("encoder");
            for (format, gzip) in shared.wanted() {
                drop(snapshot.body(format, gzip));
            }
            shared.publish(snapshot);
        });
        if let Err(e) = done.await
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    // The owner is gone: its own end is the failure to report.
    std::future::pending::<()>().await;
}
