//! The trees (key spaces) of a store and the layout of their keys.
//!
//! Integers in keys are big-endian so that the byte order of keys is the
//! numeric order: a range scan over a prefix lists an epoch's entries in order.
//! Values are encoded by [`meshd_protocol::codec`]; keys are laid out here
//! because their order is a storage concern.

use std::fmt;

/// One key space of a store. Every backend keeps these apart: the same key in
/// two trees names two entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Tree {
    /// Gossiped reports: `region ‖ epoch ‖ report id` → the encoded envelope.
    Reports,
    /// Beacon reports: `epoch ‖ beacon id ‖ report id` → the encoded envelope.
    Beacons,
    /// Per-meter validation state: `meter id` → [`crate::MeterState`].
    Meters,
    /// Finalized summaries: `region ‖ epoch` → [`crate::FinalizedSummary`].
    Summaries,
    /// The consensus vote log: `region ‖ epoch ‖ round ‖ step` → signed vote
    /// bytes. Write it only through [`crate::StoreExt::record_vote`], which
    /// refuses a second, different vote for the same step.
    Votes,
    /// Anchors: `start epoch ‖ end epoch` → [`crate::AnchorRecord`].
    Anchors,
    /// Store-wide facts such as the schema version.
    Meta,
    /// What each decided summary settled, for proofs:
    /// `region ‖ epoch` → [`crate::Settlement`]. Added after schema 1 was
    /// fixed; a store without it reads as one without settlements.
    Settlements,
    /// The summary leaves each signed anchor root is built over:
    /// `start epoch ‖ end epoch` → [`crate::AnchorSet`]. Added after schema 1
    /// was fixed; a store without it reads as one that signed no anchor.
    AnchorSets,
}

impl Tree {
    /// Every tree, in a fixed order (the order of [`Tree::index`]).
    pub const ALL: [Tree; 9] = [
        Tree::Reports,
        Tree::Beacons,
        Tree::Meters,
        Tree::Summaries,
        Tree::Votes,
        Tree::Anchors,
        Tree::Meta,
        Tree::Settlements,
        Tree::AnchorSets,
    ];

    /// The tree's name on disk and in messages. Changing a name is a schema change.
    pub fn name(self) -> &'static str {
        match self {
            Tree::Reports => "reports",
            Tree::Beacons => "beacons",
            Tree::Meters => "meters",
            Tree::Summaries => "summaries",
            Tree::Votes => "votes",
            Tree::Anchors => "anchors",
            Tree::Meta => "meta",
            Tree::Settlements => "settlements",
            Tree::AnchorSets => "anchor_sets",
        }
    }

    /// The position of the tree in [`Tree::ALL`], for backends that keep one
    /// slot per tree.
    pub fn index(self) -> usize {
        match self {
            Tree::Reports => 0,
            Tree::Beacons => 1,
            Tree::Meters => 2,
            Tree::Summaries => 3,
            Tree::Votes => 4,
            Tree::Anchors => 5,
            Tree::Meta => 6,
            Tree::Settlements => 7,
            Tree::AnchorSets => 8,
        }
    }
}

impl fmt::Display for Tree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_is_the_position_in_all() {
        for (i, tree) in Tree::ALL.into_iter().enumerate() {
            assert_eq!(tree.index(), i);
        }
    }
}
