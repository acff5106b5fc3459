//! Incarnation numbers, compared as RFC 1982 serial numbers so they never run out, and a bound on how
//! far ahead of what we know a claim may be.
//!
//! Why: with plain `u32` order, one unauthenticated delta claiming `dead` at `u32::MAX` removed a live
//! node for good, since nothing can refute a claim at the top of the range. In serial order every value
//! has a successor, so the node can always refute; and the jump bound keeps every view of a member
//! within a small window of the others, where serial order is well defined (it is not for values
//! 2^31 apart).

/// How far ahead of the incarnation we know a claim about a known member may be. A member raises its
/// own incarnation by one per refutation, leave or tag change, so a view, however stale, trails by far
/// less; a forged claim can move a member by at most this much per packet, and its refutation follows.
pub const MAX_AHEAD: u32 = 1 << 20;

/// True when `a` comes after `b`.
pub fn newer(a: u32, b: u32) -> bool {
    let d = a.wrapping_sub(b);
    d != 0 && d < 1 << 31
}

/// True when `a` is `b` or comes after it.
pub fn at_least(a: u32, b: u32) -> bool {
    a == b || newer(a, b)
}

/// The later of two incarnations.
pub fn later(a: u32, b: u32) -> u32 {
    if newer(a, b) { a } else { b }
}

/// The incarnation after `a`.
pub fn next(a: u32) -> u32 {
    a.wrapping_add(1)
}

/// False for a claim too far ahead of `known` to come from the member itself (counted and dropped).
pub fn plausible(claim: u32, known: u32) -> bool {
    !newer(claim, known) || claim.wrapping_sub(known) <= MAX_AHEAD
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_order_wraps() {
        assert!(newer(1, 0));
        assert!(!newer(0, 0));
        assert!(!newer(0, 1));
        assert!(newer(0, u32::MAX), "the successor of the top is 0");
        assert_eq!(next(u32::MAX), 0);
        assert!(newer(next(u32::MAX), u32::MAX));
        assert!(at_least(5, 5));
        assert_eq!(later(u32::MAX, 3), 3, "u32::MAX is 4 steps before 3");
        assert_eq!(later(7, 3), 7);
    }

    #[test]
    fn claims_far_ahead_are_implausible() {
        assert!(plausible(10, 3));
        assert!(plausible(3 + MAX_AHEAD, 3));
        assert!(!plausible(4 + MAX_AHEAD, 3));
        assert!(
            plausible(2, 3),
            "older claims are judged by the caller's order"
        );
        // The forged death that used to stick: the top of the range, seen from a low incarnation, is
        // older in serial order, so it refutes nothing and kills nothing.
        assert!(!newer(u32::MAX, 1));
        // From near the top, a small step across the wrap is plausible.
        assert!(plausible(2, u32::MAX - 2));
    }
}
