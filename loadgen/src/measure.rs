//! What a run records: when each observer first saw each watched subject in each state, false positives,
//! timer lag, and process resource use.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use murmur_gossip::State;

/// Index of a virtual node from its name (`n123` → 123).
pub fn node_index(name: &str) -> Option<usize> {
    name.strip_prefix('n')?.parse().ok()
}

/// Name of virtual node `i`.
pub fn node_name(i: usize) -> String {
    format!("n{i}")
}

/// Collected observations.
#[derive(Default)]
pub struct Recorder {
    /// Subjects whose state changes are timed.
    pub watched: Vec<usize>,
    /// (subject, state) -> observer -> first time seen.
    pub seen: HashMap<(usize, State), HashMap<usize, Duration>>,
    /// Nodes legitimately gone (crashed or left): a `Dead` about anyone else is a false positive.
    pub gone: Vec<bool>,
    /// `Dead` declarations about healthy nodes.
    pub false_positives: u64,
    /// Healthy nodes ever declared dead, with how many declarations each.
    pub false_positive_subjects: HashMap<usize, u64>,
    /// Nodes whose own conclusions are not counted (as suspicions or false positives): a deaf node
    /// suspects and declares everyone.
    pub unheard: std::collections::HashSet<usize>,
    /// `Suspect` observations in total.
    pub suspicions: u64,
    /// (subject, record version) -> times at which other nodes installed it; only versions from 2 on
    /// (the first is every node's initial publish, not a change).
    pub records: HashMap<(u32, u32), Vec<Duration>>,
}

impl Recorder {
    /// Feeds one state observation (`observer` saw `subject` enter `state` at `at`).
    pub fn observe(&mut self, at: Duration, observer: usize, subject: usize, state: State) {
        if state == State::Suspect && !self.unheard.contains(&observer) {
            self.suspicions += 1;
        }
        if state == State::Dead
            && !self.gone.get(subject).copied().unwrap_or(false)
            && !self.unheard.contains(&observer)
        {
            self.false_positives += 1;
            *self.false_positive_subjects.entry(subject).or_default() += 1;
        }
        // A node's view of itself is not news, and counting it let a run wait for an event that a
        // freshly spawned node may emit before it is watched.
        if observer != subject && self.watched.contains(&subject) {
            self.seen
                .entry((subject, state))
                .or_default()
                .entry(observer)
                .or_insert(at);
        }
    }

    /// Feeds one record observation (`observer` installed `subject`'s record `version` at `at`).
    pub fn observe_record(&mut self, at: Duration, observer: usize, subject: usize, version: u32) {
        if observer != subject && version >= 2 {
            self.records
                .entry((subject as u32, version))
                .or_default()
                .push(at);
        }
    }

    /// Marks `i` as legitimately gone.
    pub fn mark_gone(&mut self, i: usize) {
        if self.gone.len() <= i {
            self.gone.resize(i + 1, false);
        }
        self.gone[i] = true;
    }

    /// Sorted times (relative to `since`) at which observers saw `subject` in `state`.
    pub fn times(&self, subject: usize, state: State, since: Duration) -> Vec<Duration> {
        let mut v: Vec<Duration> = self
            .seen
            .get(&(subject, state))
            .map(|m| m.values().map(|t| t.saturating_sub(since)).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// How many observers saw `subject` in `state`.
    pub fn count(&self, subject: usize, state: State) -> usize {
        self.seen.get(&(subject, state)).map_or(0, HashMap::len)
    }
}

/// The value at quantile `q` (0..=1) of sorted `v`.
pub fn quantile(v: &[Duration], q: f64) -> Option<Duration> {
    if v.is_empty() {
        return None;
    }
    let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
    Some(v[i])
}

/// Time until `frac` of `total` observers had seen something, from sorted times.
pub fn time_to_fraction(sorted: &[Duration], total: usize, frac: f64) -> Option<Duration> {
    let need = ((total as f64) * frac).ceil() as usize;
    if need == 0 {
        return Some(Duration::ZERO);
    }
    sorted.get(need - 1).copied()
}

/// Log-scale histogram of timer lag, shared by driver tasks without locks.
pub struct LagHistogram {
    buckets: Vec<AtomicU64>,
}

const SUB: u32 = 8;

impl Default for LagHistogram {
    fn default() -> Self {
        LagHistogram {
            buckets: (0..64 * SUB).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl LagHistogram {
    fn bucket(us: u64) -> usize {
        if us < SUB as u64 {
            return us as usize;
        }
        let exp = 63 - us.leading_zeros();
        let shift = exp - SUB.trailing_zeros();
        let sub = ((us >> shift) as u32) & (SUB - 1);
        ((exp - SUB.trailing_zeros() + 1) * SUB + sub) as usize
    }

    fn lower_bound(b: usize) -> u64 {
        let b = b as u32;
        if b < SUB {
            return b as u64;
        }
        let exp = b / SUB - 1 + SUB.trailing_zeros();
        let sub = (b % SUB) as u64;
        (SUB as u64 + sub) << (exp - SUB.trailing_zeros())
    }

    /// Records one lag sample.
    pub fn record(&self, lag: Duration) {
        let us = lag.as_micros().min(u64::MAX as u128) as u64;
        let b = Self::bucket(us).min(self.buckets.len() - 1);
        self.buckets[b].fetch_add(1, Ordering::Relaxed);
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// Approximate quantile (lower bound of the bucket, within 12.5%).
    pub fn quantile(&self, q: f64) -> Duration {
        let total = self.count();
        if total == 0 {
            return Duration::ZERO;
        }
        let need = ((total as f64) * q).ceil() as u64;
        let mut acc = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            acc += b.load(Ordering::Relaxed);
            if acc >= need {
                return Duration::from_micros(Self::lower_bound(i));
            }
        }
        Duration::ZERO
    }
}

/// CPU seconds (user + system) and peak RSS in KiB of this process.
pub fn rusage() -> (f64, u64) {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (tv(ru.ru_utime) + tv(ru.ru_stime), ru.ru_maxrss as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_close() {
        let h = LagHistogram::default();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let p50 = h.quantile(0.5).as_micros() as f64;
        let p99 = h.quantile(0.99).as_micros() as f64;
        assert!((440.0..=500.0).contains(&p50), "{p50}");
        assert!((870.0..=990.0).contains(&p99), "{p99}");
        assert_eq!(h.count(), 1000);
    }

    #[test]
    fn fractions_and_false_positives() {
        let mut r = Recorder {
            watched: vec![7],
            ..Default::default()
        };
        r.mark_gone(7);
        for o in 0..10 {
            r.observe(
                Duration::from_millis(100 * o as u64),
                10 + o,
                7,
                State::Dead,
            );
        }
        r.observe(Duration::from_secs(1), 1, 3, State::Dead);
        assert_eq!(r.false_positives, 1);
        // A node's view of itself is not an observation.
        r.observe(Duration::ZERO, 7, 7, State::Alive);
        assert_eq!(r.count(7, State::Alive), 0);
        assert_eq!(r.count(7, State::Dead), 10);
        let t = r.times(7, State::Dead, Duration::ZERO);
        assert_eq!(
            time_to_fraction(&t, 10, 0.5),
            Some(Duration::from_millis(400))
        );
        assert_eq!(
            time_to_fraction(&t, 10, 1.0),
            Some(Duration::from_millis(900))
        );
        assert_eq!(time_to_fraction(&t, 20, 1.0), None);
        assert_eq!(quantile(&t, 0.99), Some(Duration::from_millis(900)));
    }
}
