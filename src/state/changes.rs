//! The change index: one number that grows whenever something readers see changes, the source of
//! `X-Consul-Index`; blocking queries and waits for cluster-wide convergence wait on it.

use tokio::sync::watch;
use tokio::time::Instant;

/// The agent's change index and its watchers.
#[derive(Debug)]
pub struct ChangeIndex {
    tx: watch::Sender<u64>,
}

impl ChangeIndex {
    /// Starts at `index`.
    pub fn new(index: u64) -> Self {
        ChangeIndex {
            tx: watch::Sender::new(index),
        }
    }

    /// Moves the index to `index` (never back) and wakes the waiters.
    pub fn advance(&self, index: u64) {
        self.tx.send_if_modified(|v| {
            let moved = index > *v;
            if moved {
                *v = index;
            }
            moved
        });
    }

    /// The index now.
    pub fn current(&self) -> u64 {
        *self.tx.borrow()
    }

    /// Waits until the index passes `min` or `deadline` comes; returns the index then.
    pub async fn wait_past(&self, min: u64, deadline: Instant) -> u64 {
        let mut rx = self.tx.subscribe();
        loop {
            let now = *rx.borrow_and_update();
            if now > min {
                return now;
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return *rx.borrow();
            }
        }
    }

    /// A receiver that sees every later advance (for waits on a condition of their own).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn waiters_wake_on_advance_and_give_up_at_the_deadline() {
        let c = Arc::new(ChangeIndex::new(5));
        c.advance(3);
        assert_eq!(c.current(), 5, "never back");
        let far = Instant::now() + Duration::from_secs(30);
        let waiter = {
            let c = c.clone();
            tokio::spawn(async move { c.wait_past(5, far).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        c.advance(6);
        assert_eq!(waiter.await.unwrap(), 6);
        assert_eq!(c.wait_past(2, far).await, 6, "already past");
        let soon = Instant::now() + Duration::from_millis(20);
        assert_eq!(c.wait_past(6, soon).await, 6, "deadline: same index");
    }
}
