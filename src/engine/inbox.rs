//! The one way into the state's owner: a bounded queue. The owner does no
//! I/O, so it keeps up; when it does not (a pass of a million ports, a
//! starved CPU) the queue fills, and a sender waits for room — a thread
//! blocks, a task yields, never holding up an async worker — and each wait
//! is counted (`portwarden_engine_queue_full_total`), never silent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, RecvError, Sender};
use std::time::Duration;

use super::state::Msg;

/// Messages the queue holds: more than a round of 10,000 checks sends at
/// once. Only what is queued takes memory: the queue is a list of small
/// blocks, freed as they are read, not a ring of `CAPACITY` slots made up
/// front (std's `sync_channel` is one: 65,536 × a message, ~6 MB resident
/// for good once a few rounds had gone round it).
pub const CAPACITY: usize = 65_536;

/// How long a sender that found the queue full waits before it looks again.
const RETRY: Duration = Duration::from_millis(5);

/// The owner has stopped: nothing more can be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone;

/// What both ends share: the messages queued and the sends that found the
/// queue full.
#[derive(Debug)]
struct Count {
    queued: AtomicUsize,
    full: AtomicU64,
    capacity: usize,
}

/// A sender into the owner's queue.
#[derive(Debug, Clone)]
pub struct Outbox {
    tx: Sender<Msg>,
    count: Arc<Count>,
}

/// The owner's end.
pub struct Inbox {
    rx: Receiver<Msg>,
    count: Arc<Count>,
}

/// A queue of `capacity` messages.
pub fn channel(capacity: usize) -> (Outbox, Inbox) {
    let (tx, rx) = std::sync::mpsc::channel();
    let count = Arc::new(Count {
        queued: AtomicUsize::new(0),
        full: AtomicU64::new(0),
        capacity,
    });
    (
        Outbox {
            tx,
            count: count.clone(),
        },
        Inbox { rx, count },
    )
}

impl Inbox {
    /// The next message, waiting for one; Err once every sender is gone.
    pub fn recv(&self) -> Result<Msg, RecvError> {
        let msg = self.rx.recv()?;
        self.count.queued.fetch_sub(1, Relaxed);
        Ok(msg)
    }

    /// Sends that found the queue full, so far.
    pub fn full_total(&self) -> u64 {
        self.count.full.load(Relaxed)
    }
}

impl Outbox {
    /// Takes a place in the queue if there is one.
    fn reserve(&self) -> bool {
        let c = &self.count;
        c.queued
            .fetch_update(Relaxed, Relaxed, |n| (n < c.capacity).then_some(n + 1))
            .is_ok()
    }

    fn put(&self, msg: Msg) -> Result<(), Gone> {
        self.tx.send(msg).map_err(|_| {
            self.count.queued.fetch_sub(1, Relaxed);
            Gone
        })
    }

    /// From a thread: waits for room when the queue is full (counted once).
    pub fn send(&self, msg: Msg) -> Result<(), Gone> {
        let mut counted = false;
        while !self.reserve() {
            if !std::mem::replace(&mut counted, true) {
                self.count.full.fetch_add(1, Relaxed);
            }
            std::thread::sleep(RETRY);
        }
        self.put(msg)
    }

    /// From a task: yields until there is room when the queue is full
    /// (counted once), never blocking an async worker.
    pub async fn post(&self, msg: Msg) -> Result<(), Gone> {
        let mut counted = false;
        while !self.reserve() {
            if !std::mem::replace(&mut counted, true) {
                self.count.full.fetch_add(1, Relaxed);
            }
            tokio::time::sleep(RETRY).await;
        }
        self.put(msg)
    }

    /// From synchronous code on an async thread (a reload's callback):
    /// the message is posted by a task of its own.
    pub fn post_later(&self, msg: Msg) {
        let outbox = self.clone();
        tokio::spawn(async move {
            let _ = outbox.post(msg).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_is_counted_and_waited_for() {
        let (outbox, inbox) = channel(1);
        outbox.send(Msg::Publish).expect("room");
        let sender = {
            let outbox = outbox.clone();
            std::thread::spawn(move || outbox.send(Msg::Stop))
        };
        while inbox.full_total() == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(matches!(inbox.recv(), Ok(Msg::Publish)));
        assert_eq!(sender.join().expect("sender"), Ok(()));
        assert!(matches!(inbox.recv(), Ok(Msg::Stop)));
        assert_eq!(inbox.full_total(), 1);
        drop(inbox);
        assert_eq!(outbox.send(Msg::Publish), Err(Gone));
    }

    #[tokio::test]
    async fn a_task_yields_while_the_queue_is_full() {
        let (outbox, inbox) = channel(1);
        outbox.post(Msg::Publish).await.expect("room");
        let posting = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.post(Msg::Stop).await }
        });
        while inbox.full_total() == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(matches!(inbox.recv(), Ok(Msg::Publish)));
        assert_eq!(posting.await.expect("task"), Ok(()));
        assert_eq!(inbox.full_total(), 1);
    }
}
