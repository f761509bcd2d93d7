//! What waits to be written on one connection: filled from any thread (the engine's sends),
//! drained by the connection's task. An empty queue holds no allocation — a channel would keep
//! a block of slots per connection, and idle connections are what a Front End holds by the
//! ten thousand.

use crate::lock;
use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;

/// Messages a connection may have waiting; more are dropped (and counted by the caller).
const CAPACITY: usize = 256;

/// The same for a trunk: a connection to or from another server (of the deployment, or a
/// partner's), which carries the traffic of many users at once.
const TRUNK_CAPACITY: usize = 16_384;

#[derive(Default)]
pub(crate) struct FlowQueue {
    state: Mutex<State>,
    ready: Notify,
}

#[derive(Default)]
struct State {
    items: VecDeque<Vec<u8>>,
    closed: bool,
    trunk: bool,
}

impl FlowQueue {
    /// Queues `bytes`; gives them back when the queue is full or closed.
    pub(crate) fn push(&self, bytes: Vec<u8>) -> Result<(), Vec<u8>> {
        let mut s = lock(&self.state);
        let capacity = if s.trunk { TRUNK_CAPACITY } else { CAPACITY };
        if s.closed || s.items.len() >= capacity {
            return Err(bytes);
        }
        s.items.push_back(bytes);
        drop(s);
        self.ready.notify_one();
        Ok(())
    }

    /// The connection is a trunk to another server: it may have more waiting.
    pub(crate) fn widen(&self) {
        lock(&self.state).trunk = true;
    }

    /// No more pushes: the connection writes what is queued, then ends.
    pub(crate) fn close(&self) {
        lock(&self.state).closed = true;
        self.ready.notify_one();
    }

    /// The next message to write; `None` once closed and drained. Cancel-safe: nothing is
    /// taken until it is returned.
    pub(crate) async fn pop(&self) -> Option<Vec<u8>> {
        loop {
            {
                let mut s = lock(&self.state);
                if let Some(b) = s.items.pop_front() {
                    if s.items.is_empty() {
                        s.items = VecDeque::new(); // give the room back while idle
                    }
                    return Some(b);
                }
                if s.closed {
                    return None;
                }
            }
            // a push between the check and here leaves a permit: this returns at once
            self.ready.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queued_messages_come_out_in_order_then_none_after_close() {
        let q = FlowQueue::default();
        q.push(b"a".to_vec()).unwrap();
        q.push(b"b".to_vec()).unwrap();
        q.close();
        assert_eq!(
            q.push(b"c".to_vec()),
            Err(b"c".to_vec()),
            "closed: given back"
        );
        assert_eq!(q.pop().await.as_deref(), Some(&b"a"[..]));
        assert_eq!(q.pop().await.as_deref(), Some(&b"b"[..]));
        assert_eq!(q.pop().await, None);
    }

    #[tokio::test]
    async fn a_full_queue_gives_the_message_back_and_a_waiting_pop_wakes_on_push() {
        let q = std::sync::Arc::new(FlowQueue::default());
        for i in 0..CAPACITY {
            q.push(vec![i as u8]).unwrap();
        }
        assert!(q.push(vec![0]).is_err());
        for _ in 0..CAPACITY {
            q.pop().await.unwrap();
        }
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.pop().await }
        });
        tokio::task::yield_now().await;
        q.push(b"late".to_vec()).unwrap();
        assert_eq!(waiter.await.unwrap().as_deref(), Some(&b"late"[..]));
    }
}

#[cfg(test)]
mod capacity_tests {
    use super::*;

    #[test]
    fn a_trunk_holds_more_than_a_device_connection() {
        let q = FlowQueue::default();
        for _ in 0..CAPACITY {
            assert!(q.push(vec![0]).is_ok());
        }
        assert!(
            q.push(vec![0]).is_err(),
            "a device's connection stops at its capacity"
        );
        q.widen();
        for _ in CAPACITY..TRUNK_CAPACITY {
            assert!(q.push(vec![0]).is_ok());
        }
        assert!(q.push(vec![0]).is_err(), "a trunk too, further on");
    }
}
