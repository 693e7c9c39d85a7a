//! The one way into the state's owner: a bounded queue. The owner does no
//! I/O, so it keeps up; when it does not (a pass of a million ports, a
//! starved CPU) the queue fills, and a sender waits for room — a thread
//! blocks, a task yields, never holding up an async worker — and each wait
//! is counted (`portwarden_engine_queue_full_total`), never silent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::Duration;

use super::state::Msg;

/// Messages the queue holds: more than a round of 10,000 checks sends at
/// once (each a few hundred bytes at most: about 20 MB when full).
pub const CAPACITY: usize = 65_536;

/// The owner has stopped: nothing more can be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone;

/// A sender into the owner's queue.
#[derive(Debug, Clone)]
pub struct Outbox {
    tx: SyncSender<Msg>,
    full: Arc<AtomicU64>,
}

/// The owner's end.
pub struct Inbox {
    pub rx: Receiver<Msg>,
    full: Arc<AtomicU64>,
}

/// A queue of `capacity` messages.
pub fn channel(capacity: usize) -> (Outbox, Inbox) {
    let (tx, rx) = std::sync::mpsc::sync_channel(capacity);
    let full = Arc::new(AtomicU64::new(0));
    (
        Outbox {
            tx,
            full: full.clone(),
        },
        Inbox { rx, full },
    )
}

impl Inbox {
    /// Sends that found the queue full, so far.
    pub fn full_total(&self) -> u64 {
        self.full.load(Relaxed)
    }
}

impl Outbox {
    /// From a thread: waits for room when the queue is full (counted).
    pub fn send(&self, msg: Msg) -> Result<(), Gone> {
        match self.tx.try_send(msg) {
            Ok(()) => Ok(()),
            Err(TrySendError::Disconnected(_)) => Err(Gone),
            Err(TrySendError::Full(msg)) => {
                self.full.fetch_add(1, Relaxed);
                self.tx.send(msg).map_err(|_| Gone)
            }
        }
    }

    /// From a task: yields until there is room when the queue is full
    /// (counted once), never blocking an async worker.
    pub async fn post(&self, mut msg: Msg) -> Result<(), Gone> {
        let mut counted = false;
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Disconnected(_)) => return Err(Gone),
                Err(TrySendError::Full(back)) => {
                    if !std::mem::replace(&mut counted, true) {
                        self.full.fetch_add(1, Relaxed);
                    }
                    msg = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
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
        assert!(matches!(inbox.rx.recv(), Ok(Msg::Publish)));
        assert_eq!(sender.join().expect("sender"), Ok(()));
        assert!(matches!(inbox.rx.recv(), Ok(Msg::Stop)));
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
        assert!(matches!(inbox.rx.recv(), Ok(Msg::Publish)));
        assert_eq!(posting.await.expect("task"), Ok(()));
        assert_eq!(inbox.full_total(), 1);
    }
}
