//! Lifeguard dynamic suspicion: the timeout shrinks from `max` towards `min` as independent peers confirm;
//! with ring monitoring, one confirmation more brings it down to a lower `fast` floor.

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
    /// The timeout once `k + 1` confirmations are in; `None` keeps Lifeguard's rule alone.
    fast: Option<Duration>,
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
            fast: None,
            from: vec![from],
        }
    }

    /// Lets `k + 1` confirmations (`k + 2` distinct suspectors) bring the timeout down to `fast`.
    pub fn with_fast_floor(mut self, fast: Duration) -> Self {
        self.fast = Some(fast);
        self
    }

    /// Confirmations past which nothing changes.
    fn needed(&self) -> u32 {
        self.k + u32::from(self.fast.is_some())
    }

    /// Records a confirmation; returns true when it came from a new peer and was counted (the deadline
    /// may stay where it was when the fast floor equals Lifeguard's, in small clusters).
    pub fn confirm(&mut self, from: &str) -> bool {
        if self.confirmations() >= self.needed() || self.raised_by(from) {
            return false;
        }
        self.from.push(Arc::from(from));
        true
    }

    /// Whether `name` raised or confirmed this suspicion.
    pub fn raised_by(&self, name: &str) -> bool {
        self.from.iter().any(|f| &**f == name)
    }

    /// Independent confirmations so far (the original suspector does not count).
    pub fn confirmations(&self) -> u32 {
        self.from.len() as u32 - 1
    }

    /// When the member is declared failed, given the confirmations so far.
    pub fn deadline(&self) -> Instant {
        let c = self.confirmations();
        match self.fast {
            Some(fast) if c > self.k => self.start + fast,
            _ => self.start + timeout(self.min, self.max, self.k, c),
        }
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

    #[test]
    fn one_confirmation_past_lifeguard_reaches_the_fast_floor() {
        let (min, max, fast) = (
            Duration::from_secs(14),
            Duration::from_secs(84),
            Duration::from_secs(5),
        );
        let t0 = Instant::now();
        let mut s = Suspicion::new(t0, min, max, 2, Arc::from("a")).with_fast_floor(fast);
        assert_eq!(
            s.deadline(),
            t0 + max,
            "one suspector alone: the full timeout"
        );
        assert!(!s.confirm("a"));
        assert_eq!(s.deadline(), t0 + max, "repeating itself does not help");
        assert!(s.confirm("b"));
        assert!(s.deadline() > t0 + min && s.deadline() < t0 + max);
        assert!(s.confirm("c"));
        assert_eq!(
            s.deadline(),
            t0 + min,
            "Lifeguard's k confirmations: its floor"
        );
        assert!(s.confirm("d"));
        assert_eq!(s.deadline(), t0 + fast, "k + 1: the fast floor");
        assert!(!s.confirm("e"), "nothing moves past it");
        assert_eq!(s.confirmations(), 3);
    }
}
