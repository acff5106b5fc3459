//! Lifeguard local health: a node that misses acks or must refute suspicions slows its own probing.

use std::time::Duration;

/// Local health score in `0..max`; 0 is healthy.
#[derive(Debug, Clone)]
pub struct Awareness {
    score: u32,
    max: u32,
}

impl Awareness {
    /// Healthy awareness with multiplier cap `max` (at least 1).
    pub fn new(max: u32) -> Self {
        Awareness {
            score: 0,
            max: max.max(1),
        }
    }

    /// Adds `delta`, clamped to `0..max`.
    pub fn apply(&mut self, delta: i32) {
        let s = self.score as i64 + delta as i64;
        self.score = s.clamp(0, (self.max - 1) as i64) as u32;
    }

    /// Current score.
    pub fn score(&self) -> u32 {
        self.score
    }

    /// `d * (score + 1)`.
    pub fn scale(&self, d: Duration) -> Duration {
        d * (self.score + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamps_and_scales() {
        let mut a = Awareness::new(8);
        a.apply(-1);
        assert_eq!(a.score(), 0);
        a.apply(3);
        assert_eq!(a.scale(Duration::from_secs(1)), Duration::from_secs(4));
        a.apply(100);
        assert_eq!(a.score(), 7);
    }
}
