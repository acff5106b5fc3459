//! Per-client connection caps for the TCP listeners (HTTP, DNS over TCP): one client address may hold
//! only so many open connections, so one client cannot take every socket or file descriptor.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Counts open connections per client address.
#[derive(Debug)]
pub struct ConnLimiter {
    per_client: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct ConnGuard {
    limiter: Arc<ConnLimiter>,
    ip: IpAddr,
}

impl ConnLimiter {
    /// A limiter admitting `per_client` connections per address (0: no limit).
    pub fn new(per_client: usize) -> Arc<Self> {
        Arc::new(ConnLimiter {
            per_client,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Admits one more connection from `ip`, or `None` when it already holds its share.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<ConnGuard> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if self.per_client != 0 && *n >= self.per_client {
            return None;
        }
        *n += 1;
        Some(ConnGuard {
            limiter: self.clone(),
            ip,
        })
    }

    /// Connections `ip` holds now.
    pub fn open(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut open = self.limiter.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                // Keeps the map as small as the set of clients connected right now.
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_each_client_separately_and_frees_on_drop() {
        let l = ConnLimiter::new(2);
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        let g1 = l.try_acquire(a).unwrap();
        let _g2 = l.try_acquire(a).unwrap();
        assert!(l.try_acquire(a).is_none());
        let _g3 = l.try_acquire(b).expect("another client has its own share");
        drop(g1);
        assert_eq!(l.open(a), 1);
        assert!(l.try_acquire(a).is_some());
        let unlimited = ConnLimiter::new(0);
        let all: Vec<_> = (0..1000)
            .map(|_| unlimited.try_acquire(a).unwrap())
            .collect();
        assert_eq!(unlimited.open(a), 1000);
        drop(all);
        assert_eq!(unlimited.open(a), 0);
        assert!(unlimited.open.lock().unwrap().is_empty());
    }
}
