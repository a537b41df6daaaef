//! What the anchor submitter does next, decided from what it last read from
//! the chain. Pure: [`decide`] takes an [`Observation`] and returns a
//! [`Decision`]; the IO half ([`crate::Anchorer`]) makes the observation,
//! executes the decision and observes again. Tests drive it with hand-built
//! observations (a landed root, a conflicting one, a reorganised-away
//! transaction, …) without a chain.

use meshd_protocol::hash::Hash32;

use crate::digest::EpochRange;

/// What the submitter knows about its own latest anchoring transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnTx {
    /// Sent, and the node still knows it but has not mined it.
    Pending,
    /// Mined in this block; `success` is the receipt's status.
    Mined {
        /// The block that holds it.
        block: u64,
        /// Whether it succeeded (a revert means another submission won a race).
        success: bool,
    },
    /// The node knows no such transaction any more: dropped from the pool, or
    /// its block was reorganised away and the transaction with it.
    Unknown,
}

/// One consistent reading of the chain for one range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observation {
    /// `rootOf(from, to)` at the head; `None` when it is zero (not anchored).
    pub anchored_root: Option<Hash32>,
    /// The block whose `Anchored` event set that root, when known.
    pub anchored_block: Option<u64>,
    /// `nextEpoch()` at the head.
    pub next_epoch: u64,
    /// The head block number.
    pub head: u64,
    /// The submitter's own latest transaction for this range, if it sent one.
    pub own: Option<OwnTx>,
}

/// What to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The root is anchored in `block` under at least the required confirmations.
    Done {
        /// The block of the anchoring transaction.
        block: u64,
    },
    /// Nothing to send: wait for a block (confirmations, or our pending transaction) and observe again.
    Wait,
    /// Send (or send again) the anchoring transaction.
    Submit,
    /// A different root is anchored for exactly this range: never overwrite it.
    Conflict {
        /// The root on chain.
        anchored: Hash32,
    },
    /// The range overlaps epochs already anchored under other ranges: the
    /// contract would revert `RangeOverlaps`.
    Overlaps {
        /// The contract's `nextEpoch()`.
        next_epoch: u64,
    },
}

/// Decides the next step for anchoring `root` over `range`, needing
/// `confirmations` (≥ 1; 1 means "in the head block") blocks on top of and
/// including the anchoring block.
pub fn decide(range: EpochRange, root: &Hash32, confirmations: u64, seen: &Observation) -> Decision {
    if let Some(anchored) = seen.anchored_root {
        if anchored != *root {
            return Decision::Conflict { anchored };
        }
        let block = match (seen.anchored_block, seen.own) {
            (Some(block), _) => block,
            (None, Some(OwnTx::Mined { block, success: true })) => block,
            // Anchored, but the block is not known yet (the event's block not
            // indexed at the head we read): look again.
            _ => return Decision::Wait,
        };
        let have = seen.head.saturating_add(1).saturating_sub(block);
        return if have >= confirmations.max(1) { Decision::Done { block } } else { Decision::Wait };
    }
    if seen.next_epoch > range.from {
        return Decision::Overlaps { next_epoch: seen.next_epoch };
    }
    match seen.own {
        None | Some(OwnTx::Unknown) => Decision::Submit,
        Some(OwnTx::Pending) => Decision::Wait,
        // Mined successfully yet the root is not anchored at the head: the
        // block was reorganised away (or the head read is older than the
        // receipt read); a reverted one lost a race or met changed state.
        // Either way, submitting again re-checks everything by estimating gas.
        Some(OwnTx::Mined { success: true, block }) if block > seen.head => Decision::Wait,
        Some(OwnTx::Mined { .. }) => Decision::Submit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RANGE: EpochRange = EpochRange { from: 4, to: 7 };
    const ROOT: Hash32 = Hash32([7; 32]);

    fn fresh() -> Observation {
        Observation { anchored_root: None, anchored_block: None, next_epoch: 4, head: 100, own: None }
    }

    #[test]
    fn unanchored_range_without_a_transaction_is_submitted() {
        assert_eq!(decide(RANGE, &ROOT, 3, &fresh()), Decision::Submit);
    }

    #[test]
    fn pending_transaction_is_waited_for() {
        let seen = Observation { own: Some(OwnTx::Pending), ..fresh() };
        assert_eq!(decide(RANGE, &ROOT, 3, &seen), Decision::Wait);
    }

    #[test]
    fn same_root_waits_for_confirmations_then_is_done() {
        let landed = Observation {
            anchored_root: Some(ROOT),
            anchored_block: Some(100),
            next_epoch: 8,
            head: 101,
            own: Some(OwnTx::Mined { block: 100, success: true }),
        };
        assert_eq!(decide(RANGE, &ROOT, 3, &landed), Decision::Wait);
        let deeper = Observation { head: 102, ..landed };
        assert_eq!(decide(RANGE, &ROOT, 3, &deeper), Decision::Done { block: 100 });
    }

    #[test]
    fn root_landed_by_another_member_is_done_without_submitting() {
        let other =
            Observation { anchored_root: Some(ROOT), anchored_block: Some(90), next_epoch: 8, ..fresh() };
        assert_eq!(decide(RANGE, &ROOT, 3, &other), Decision::Done { block: 90 });
    }

    #[test]
    fn different_root_for_the_range_is_a_conflict() {
        let other = Observation { anchored_root: Some(Hash32([9; 32])), anchored_block: Some(90), ..fresh() };
        assert_eq!(decide(RANGE, &ROOT, 1, &other), Decision::Conflict { anchored: Hash32([9; 32]) });
    }

    #[test]
    fn range_behind_the_cursor_overlaps() {
        let later = Observation { next_epoch: 6, ..fresh() };
        assert_eq!(decide(RANGE, &ROOT, 1, &later), Decision::Overlaps { next_epoch: 6 });
    }

    #[test]
    fn transaction_reorganised_away_is_submitted_again() {
        let gone = Observation { own: Some(OwnTx::Unknown), ..fresh() };
        assert_eq!(decide(RANGE, &ROOT, 3, &gone), Decision::Submit);
        let mined_then_gone = Observation { own: Some(OwnTx::Mined { block: 99, success: true }), ..fresh() };
        assert_eq!(decide(RANGE, &ROOT, 3, &mined_then_gone), Decision::Submit);
    }

    #[test]
    fn receipt_newer_than_the_head_read_is_waited_for() {
        let racing = Observation { own: Some(OwnTx::Mined { block: 101, success: true }), ..fresh() };
        assert_eq!(decide(RANGE, &ROOT, 3, &racing), Decision::Wait);
    }

    #[test]
    fn reverted_transaction_is_submitted_again() {
        let reverted = Observation { own: Some(OwnTx::Mined { block: 99, success: false }), ..fresh() };
        assert_eq!(decide(RANGE, &ROOT, 3, &reverted), Decision::Submit);
    }
}
