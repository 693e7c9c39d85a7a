//! Port events as the engine keeps them: the state's owner compares each
//! discovery pass with the last ([`crate::events::Tracker`]), keeps the
//! recent events and the counts for the snapshot, and hands the events to
//! the output's writer (a thread of its own) without waiting on it.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::SystemTime;

use crate::discover::Discovery;
use crate::events::output::Handle;
use crate::events::{Counts, Recent, Tracker};

/// What a snapshot carries of the events.
#[derive(Debug, Clone, Default)]
pub struct EventsView {
    pub recent: Recent,
    pub counts: Counts,
    /// (written, dropped, failed) by the output, when there is one.
    pub output: Option<(u64, u64, u64)>,
}

/// The events' part of the state's owner.
pub struct EventsState {
    tracker: Tracker,
    view: Arc<EventsView>,
    out: Option<Handle>,
}

impl EventsState {
    pub fn new(capacity: usize, out: Option<Handle>) -> EventsState {
        EventsState {
            tracker: Tracker::new(),
            view: Arc::new(EventsView {
                recent: Recent::new(capacity),
                counts: Counts::default(),
                output: out.as_ref().filter(|o| o.output).map(|_| (0, 0, 0)),
            }),
            out,
        }
    }

    /// Compares a pass with the last; hands its events to the output.
    pub fn observe(&mut self, pass: &Discovery) {
        let events = self.tracker.observe(pass, SystemTime::now());
        if !events.is_empty() {
            let view = Arc::make_mut(&mut self.view);
            view.counts.add(&events);
            view.recent.push(&events);
            if let Some(out) = &self.out {
                out.send(events);
            }
        }
    }

    /// The view for a snapshot: the same `Arc` while nothing changed.
    pub fn view(&mut self) -> Arc<EventsView> {
        if let Some(out) = self.out.as_ref().filter(|o| o.output) {
            let c = &out.counts;
            let now = Some((
                c.written.load(Relaxed),
                c.dropped.load(Relaxed),
                c.failed.load(Relaxed),
            ));
            if self.view.output != now {
                Arc::make_mut(&mut self.view).output = now;
            }
        }
        Arc::clone(&self.view)
    }
}
