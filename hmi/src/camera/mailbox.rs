//! A single-slot hand-off: the producer overwrites, the consumer takes the
//! newest. A slow consumer skips frames instead of growing a queue.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

pub struct Mailbox<T> {
    slot: Mutex<Slot<T>>,
    ready: Condvar,
}

struct Slot<T> {
    value: Option<T>,
    closed: bool,
    /// How many values were overwritten before anyone took them.
    dropped: u64,
}

impl<T> Default for Mailbox<T> {
    fn default() -> Self {
        Mailbox {
            slot: Mutex::new(Slot {
                value: None,
                closed: false,
                dropped: 0,
            }),
            ready: Condvar::new(),
        }
    }
}

impl<T> Mailbox<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slot<T>> {
        // A panicking holder cannot leave the slot half-written: recover it.
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Latest wins: replaces whatever was not yet taken.
    pub fn put(&self, value: T) {
        let mut slot = self.lock();
        if slot.value.replace(value).is_some() {
            slot.dropped += 1;
        }
        self.ready.notify_one();
    }

    pub fn try_take(&self) -> Option<T> {
        self.lock().value.take()
    }

    /// Waits up to `timeout` for a value; `None` on timeout or when closed and empty.
    pub fn take_timeout(&self, timeout: Duration) -> Option<T> {
        let slot = self.lock();
        let (mut slot, _) = self
            .ready
            .wait_timeout_while(slot, timeout, |s| s.value.is_none() && !s.closed)
            .unwrap_or_else(PoisonError::into_inner);
        slot.value.take()
    }

    /// Wakes waiting consumers for good; producers check `is_closed` to stop.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn latest_wins_and_nothing_queues() {
        let m = Mailbox::default();
        for i in 0..100 {
            m.put(i);
        }
        assert_eq!(m.try_take(), Some(99));
        assert_eq!(m.try_take(), None);
        assert_eq!(m.dropped(), 99);
    }

    #[test]
    fn a_waiting_consumer_wakes_on_put_and_on_close() {
        let m = Arc::new(Mailbox::default());
        let producer = {
            let m = Arc::clone(&m);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                m.put("frame");
            })
        };
        assert_eq!(m.take_timeout(Duration::from_secs(5)), Some("frame"));
        producer.join().unwrap();
        assert_eq!(
            m.take_timeout(Duration::from_millis(10)),
            None,
            "times out when empty"
        );
        let closer = {
            let m = Arc::clone(&m);
            std::thread::spawn(move || m.close())
        };
        assert_eq!(m.take_timeout(Duration::from_secs(5)), None);
        closer.join().unwrap();
        assert!(m.is_closed());
    }
}
