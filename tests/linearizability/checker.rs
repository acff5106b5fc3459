//! A linearizability checker for one key under writes, reads and compare-and-swap: the search of
//! Wing and Gong with Lowe's memo of (operations linearized, state) pairs, as Porcupine does it. An
//! operation whose outcome is unknown (the client gave up waiting) may take effect at any point after
//! its call or never, which the search covers by giving it no return: it can then be placed after
//! every operation that did return, where it changes nothing observable.
//!
//! Written here rather than taken from a crate: the Rust testers found (stateright's) enumerate
//! interleavings without the memo, which does not finish on the histories this test records.

use std::collections::HashSet;

/// What a client did to the key, and what it saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Set the value.
    Write(u64),
    /// Read the value (`None`: no key).
    Read(Option<u64>),
    /// Set `new` if the value is `expect`; `ok` is the answer (`None`: unknown).
    Cas {
        expect: u64,
        new: u64,
        ok: Option<bool>,
    },
}

/// One operation: when it was called and when it returned (`None`: its outcome is unknown).
#[derive(Debug, Clone, Copy)]
pub struct Op {
    pub call: u64,
    pub ret: Option<u64>,
    pub kind: Kind,
}

/// The key's value after `kind` at `state`, or `None` when `kind`'s answer is impossible there.
fn step(state: Option<u64>, kind: Kind) -> Option<Option<u64>> {
    match kind {
        Kind::Write(v) => Some(Some(v)),
        Kind::Read(seen) => (seen == state).then_some(state),
        Kind::Cas { expect, new, ok } => {
            let holds = state == Some(expect);
            match ok {
                Some(answer) if answer != holds => None,
                _ => Some(if holds { Some(new) } else { state }),
            }
        }
    }
}

#[derive(Clone, Copy)]
struct Node {
    op: usize,
    call: bool,
    /// For a call: the index of its return node.
    other: usize,
    prev: usize,
    next: usize,
}

const NIL: usize = usize::MAX;

struct List {
    nodes: Vec<Node>,
    head: usize,
}

impl List {
    /// Unlinks the call node `c` and its return.
    fn lift(&mut self, c: usize) {
        for n in [c, self.nodes[c].other] {
            let Node { prev, next, .. } = self.nodes[n];
            self.link(prev, next);
        }
    }

    /// Links `c` and its return back where they were (the reverse order of `lift`).
    fn unlift(&mut self, c: usize) {
        for n in [self.nodes[c].other, c] {
            let Node { prev, next, .. } = self.nodes[n];
            if prev == NIL {
                self.head = n;
            } else {
                self.nodes[prev].next = n;
            }
            if next != NIL {
                self.nodes[next].prev = n;
            }
        }
    }

    fn link(&mut self, prev: usize, next: usize) {
        if prev == NIL {
            self.head = next;
        } else {
            self.nodes[prev].next = next;
        }
        if next != NIL {
            self.nodes[next].prev = prev;
        }
    }
}

/// Whether `history` is linearizable for a key whose value starts as `initial`.
pub fn linearizable(initial: Option<u64>, history: &[Op]) -> bool {
    // Calls and returns in time order; a call sorts before a return at the same instant (the two
    // operations then overlap, the weaker claim). Unknown outcomes return after everything.
    let mut events: Vec<(u64, bool, usize)> = Vec::new();
    for (i, op) in history.iter().enumerate() {
        events.push((op.call, true, i));
        events.push((op.ret.unwrap_or(u64::MAX), false, i));
    }
    events.sort_by_key(|&(t, call, i)| (t, !call, i));
    let mut nodes: Vec<Node> = events
        .iter()
        .map(|&(_, call, op)| Node {
            op,
            call,
            other: NIL,
            prev: NIL,
            next: NIL,
        })
        .collect();
    let mut ret_of = vec![NIL; history.len()];
    for (n, node) in nodes.iter().enumerate() {
        if !node.call {
            ret_of[node.op] = n;
        }
    }
    let len = nodes.len();
    for (n, node) in nodes.iter_mut().enumerate() {
        if node.call {
            node.other = ret_of[node.op];
        }
        node.prev = if n == 0 { NIL } else { n - 1 };
        node.next = if n + 1 == len { NIL } else { n + 1 };
    }
    let mut list = List {
        nodes,
        head: if len == 0 { NIL } else { 0 },
    };

    let words = history.len().div_ceil(64);
    let mut done = vec![0u64; words];
    let mut seen: HashSet<(Vec<u64>, Option<u64>)> = HashSet::new();
    let mut stack: Vec<(usize, Option<u64>)> = Vec::new();
    let mut state = initial;
    let mut at = list.head;
    while list.head != NIL {
        if at == NIL {
            // Only reached through a return node (below); kept for safety.
            return false;
        }
        let node = list.nodes[at];
        if node.call {
            if let Some(next) = step(state, history[node.op].kind) {
                done[node.op / 64] |= 1 << (node.op % 64);
                if seen.insert((done.clone(), next)) {
                    stack.push((at, state));
                    state = next;
                    list.lift(at);
                    at = list.head;
                    continue;
                }
                done[node.op / 64] &= !(1 << (node.op % 64));
            }
            at = node.next;
        } else {
            // An operation returned before anything left could be placed: undo the last choice.
            let Some((c, before)) = stack.pop() else {
                return false;
            };
            let op = list.nodes[c].op;
            done[op / 64] &= !(1 << (op % 64));
            state = before;
            list.unlift(c);
            at = list.nodes[c].next;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(call: u64, ret: u64, kind: Kind) -> Op {
        Op {
            call,
            ret: Some(ret),
            kind,
        }
    }

    #[test]
    fn sequential_histories() {
        let h = [
            op(0, 1, Kind::Write(1)),
            op(2, 3, Kind::Read(Some(1))),
            op(
                4,
                5,
                Kind::Cas {
                    expect: 1,
                    new: 2,
                    ok: Some(true),
                },
            ),
            op(
                6,
                7,
                Kind::Cas {
                    expect: 1,
                    new: 3,
                    ok: Some(false),
                },
            ),
            op(8, 9, Kind::Read(Some(2))),
        ];
        assert!(linearizable(None, &h));
        // A read of a value overwritten before the read began.
        let stale = [
            op(0, 1, Kind::Write(1)),
            op(2, 3, Kind::Write(2)),
            op(4, 5, Kind::Read(Some(1))),
        ];
        assert!(!linearizable(None, &stale));
        // A CAS that says it held when it could not have.
        let bad_cas = [
            op(0, 1, Kind::Write(1)),
            op(
                2,
                3,
                Kind::Cas {
                    expect: 9,
                    new: 2,
                    ok: Some(true),
                },
            ),
        ];
        assert!(!linearizable(None, &bad_cas));
        assert!(linearizable(Some(4), &[op(0, 1, Kind::Read(Some(4)))]));
        assert!(!linearizable(None, &[op(0, 1, Kind::Read(Some(4)))]));
        assert!(linearizable(None, &[]));
    }

    #[test]
    fn concurrent_operations_may_take_effect_in_either_order() {
        // Two overlapping writes, then reads that agree on one order.
        let h = [
            op(0, 10, Kind::Write(1)),
            op(1, 11, Kind::Write(2)),
            op(12, 13, Kind::Read(Some(1))),
            op(14, 15, Kind::Read(Some(1))),
        ];
        assert!(linearizable(None, &h));
        // Reads after both returned cannot see the two orders.
        let h = [
            op(0, 10, Kind::Write(1)),
            op(1, 11, Kind::Write(2)),
            op(12, 13, Kind::Read(Some(1))),
            op(14, 15, Kind::Read(Some(2))),
        ];
        assert!(!linearizable(None, &h));
        // A read overlapping a write sees the old or the new value, and later reads stay new.
        let h = [
            op(0, 1, Kind::Write(1)),
            op(2, 10, Kind::Write(2)),
            op(3, 4, Kind::Read(Some(2))),
            op(5, 6, Kind::Read(Some(1))),
        ];
        assert!(!linearizable(None, &h), "new then old while the write ran");
    }

    #[test]
    fn unknown_outcomes_may_apply_late_or_never() {
        let lost = Op {
            call: 2,
            ret: None,
            kind: Kind::Write(7),
        };
        // Never took effect.
        assert!(linearizable(
            None,
            &[
                op(0, 1, Kind::Write(1)),
                lost,
                op(5, 6, Kind::Read(Some(1)))
            ]
        ));
        // Took effect late.
        let h = [
            op(0, 1, Kind::Write(1)),
            lost,
            op(5, 6, Kind::Read(Some(1))),
            op(8, 9, Kind::Read(Some(7))),
        ];
        assert!(linearizable(None, &h));
        // But not before its call.
        let h = [op(0, 1, Kind::Read(Some(7))), lost];
        assert!(!linearizable(None, &h));
        // And once seen, not undone.
        let h = [
            op(0, 1, Kind::Write(1)),
            lost,
            op(5, 6, Kind::Read(Some(7))),
            op(8, 9, Kind::Read(Some(1))),
        ];
        assert!(!linearizable(None, &h));
        // A CAS of unknown outcome applies only where it holds.
        let cas = Op {
            call: 2,
            ret: None,
            kind: Kind::Cas {
                expect: 1,
                new: 3,
                ok: None,
            },
        };
        assert!(linearizable(
            None,
            &[op(0, 1, Kind::Write(1)), cas, op(5, 6, Kind::Read(Some(3)))]
        ));
        assert!(!linearizable(
            None,
            &[op(0, 1, Kind::Write(2)), cas, op(5, 6, Kind::Read(Some(3)))]
        ));
    }

    #[test]
    fn a_long_concurrent_history_is_checked_quickly() {
        // Four clients, each writing its own values and reading back, overlapping in time: 2000
        // operations that a search without the memo would not finish.
        let mut h = Vec::new();
        for round in 0..500u64 {
            let t = round * 10;
            for c in 0..3u64 {
                h.push(op(t + c, t + 5 + c, Kind::Write(round * 4 + c + 1)));
            }
            // The round's writes overlap: any of them may be the one read after them.
            h.push(op(t + 8, t + 9, Kind::Read(Some(round * 4 + 2))));
        }
        assert!(linearizable(Some(0), &h));
        let last = h.len() - 1;
        h[last].kind = Kind::Read(Some(1));
        assert!(!linearizable(Some(0), &h));
    }
}
