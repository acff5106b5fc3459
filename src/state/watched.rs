//! A replicated table behind one lock, with one watch on its index: the shape the sessions and the
//! external catalog share (the KV store watches each key and prefix instead).

use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::watch;
use tokio::time::Instant;

/// `D` and the watch its blocked readers wait on (made by the first of them).
#[derive(Default)]
pub struct Watched<D> {
    data: RwLock<D>,
    changed: Mutex<Option<watch::Sender<u64>>>,
}

impl<D> Watched<D> {
    /// Reads the table (a writer that panicked left it consistent: each write is one assignment).
    pub fn read(&self) -> RwLockReadGuard<'_, D> {
        self.data.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the table; call [`Watched::notify`] after the guard is dropped.
    pub fn write(&self) -> RwLockWriteGuard<'_, D> {
        self.data.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes the blocked readers: the table's index is now `index`.
    pub fn notify(&self, index: u64) {
        if let Some(tx) = &*self.changed.lock().unwrap_or_else(|p| p.into_inner()) {
            tx.send_replace(index);
        }
    }

    /// Answers with `read` once its index passes `min`, or at `deadline`.
    pub async fn wait<T>(
        &self,
        min: u64,
        deadline: Instant,
        read: impl Fn() -> (u64, T),
    ) -> (u64, T) {
        let mut rx = self
            .changed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(|| watch::Sender::new(0))
            .subscribe();
        super::kv::block_past(&mut rx, min, deadline, read).await
    }
}
