//! Lifeguard dynamic suspicion: the timeout shrinks from `max` towards `min` as independent peers confirm.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// Suspicion of one member.
#[derive(Debug, Clone)]
pub struct Suspicion {
    start: Instant,
    min: Duration,
    max: Duration,
    /// Confirmations needed to reach the minimum timeout.
    k: u32,
    /// Distinct peers that suspected the member (the first suspector included).
    from: Vec<Arc<str>>,
}

impl Suspicion {
    /// Starts a suspicion raised by `from`.
    pub fn new(start: Instant, min: Duration, max: Duration, k: u32, from: Arc<str>) -> Self {
        Suspicion {
            start,
            min,
            max,
            k,
            from: vec![from],
        }
    }

    /// Records a confirmation; returns true when it came from a new peer.
    pub fn confirm(&mut self, from: &str) -> bool {
        if self.confirmations() >= self.k || self.from.iter().any(|f| &**f == from) {
            return false;
        }
        self.from.push(Arc::from(from));
        true
    }

    /// Independent confirmations so far (the original suspector does not count).
    pub fn confirmations(&self) -> u32 {
        self.from.len() as u32 - 1
    }

    /// When the member is declared failed, given the confirmations so far.
    pub fn deadline(&self) -> Instant {
        self.start + timeout(self.min, self.max, self.k, self.confirmations())
    }
}

/// `max - (max - min) * log(c + 1) / log(k + 1)`, never below `min`.
pub fn timeout(min: Duration, max: Duration, k: u32, c: u32) -> Duration {
    if k == 0 {
        return min;
    }
    let frac = ((c as f64) + 1.0).ln() / ((k as f64) + 1.0).ln();
    let raw = max.as_secs_f64() - frac * (max.as_secs_f64() - min.as_secs_f64());
    Duration::from_secs_f64(raw.max(min.as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_shrinks_with_confirmations() {
        let (min, max) = (Duration::from_secs(4), Duration::from_secs(24));
        assert_eq!(timeout(min, max, 2, 0), max);
        let one = timeout(min, max, 2, 1);
        assert!(one < max && one > min, "{one:?}");
        assert_eq!(timeout(min, max, 2, 2), min);
        assert_eq!(timeout(min, max, 0, 0), min);

        let t0 = Instant::now();
        let mut s = Suspicion::new(t0, min, max, 2, Arc::from("a"));
        assert!(
            !s.confirm("a"),
            "the original suspector is not a confirmation"
        );
        assert!(s.confirm("b"));
        assert!(!s.confirm("b"));
        assert!(s.confirm("c"));
        assert!(!s.confirm("d"), "beyond k confirmations nothing changes");
        assert_eq!(s.deadline(), t0 + min);
    }
}
