//! The layout of the keys of each [`Tree`](crate::Tree).
//!
//! Integers are big-endian so that byte order is numeric order: a prefix scan
//! lists an epoch's reports in id order, a region's summaries in epoch order,
//! and a round's votes in step order. The typed API of
//! [`StoreExt`](crate::StoreExt) builds and parses these keys; they are public
//! for tools that read a store's raw bytes.

use meshd_protocol::geo::Region;
use meshd_protocol::message::BeaconId;
use meshd_protocol::{Hash32, MeterId};

/// Length of a [`Tree::Reports`](crate::Tree::Reports) key: region (8),
/// epoch (8), report id (32).
pub const REPORT_KEY_LEN: usize = 8 + 8 + 32;
/// Length of a [`Tree::Beacons`](crate::Tree::Beacons) key: epoch (8),
/// beacon id (16), report id (32).
pub const BEACON_KEY_LEN: usize = 8 + 16 + 32;
/// Length of a [`Tree::Summaries`](crate::Tree::Summaries) key: region (8), epoch (8).
pub const SUMMARY_KEY_LEN: usize = 8 + 8;
/// Length of a [`Tree::Votes`](crate::Tree::Votes) key: region (8), epoch (8),
/// round (4), step (1).
pub const VOTE_KEY_LEN: usize = 8 + 8 + 4 + 1;
/// Length of a [`Tree::Anchors`](crate::Tree::Anchors) key: start epoch (8), end epoch (8).
pub const ANCHOR_KEY_LEN: usize = 8 + 8;

/// Key of the schema version in [`Tree::Meta`](crate::Tree::Meta).
pub const SCHEMA_VERSION_KEY: &[u8] = b"schema_version";

/// `region ‖ epoch`: the prefix of an epoch's reports, votes, and the key of its summary.
pub fn region_epoch(region: Region, epoch: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&region.0.to_be_bytes());
    key[8..].copy_from_slice(&epoch.to_be_bytes());
    key
}

/// `region ‖ epoch ‖ report id`.
pub fn report(region: Region, epoch: u64, id: &Hash32) -> [u8; REPORT_KEY_LEN] {
    let mut key = [0u8; REPORT_KEY_LEN];
    key[..16].copy_from_slice(&region_epoch(region, epoch));
    key[16..].copy_from_slice(id.as_bytes());
    key
}

/// The report id at the end of a reports key, if the key has the right length.
pub fn report_id(key: &[u8]) -> Option<Hash32> {
    if key.len() != REPORT_KEY_LEN {
        return None;
    }
    let mut id = [0u8; 32];
    id.copy_from_slice(&key[16..]);
    Some(Hash32(id))
}

/// `epoch ‖ beacon id`: the prefix of every report of one beacon.
pub fn beacon_prefix(epoch: u64, beacon: &BeaconId) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..8].copy_from_slice(&epoch.to_be_bytes());
    key[8..].copy_from_slice(&beacon.0);
    key
}

/// `epoch ‖ beacon id ‖ report id`. The report id is part of the key so that a
/// forged report reusing a beacon id never replaces the genuine one.
pub fn beacon(epoch: u64, beacon: &BeaconId, id: &Hash32) -> [u8; BEACON_KEY_LEN] {
    let mut key = [0u8; BEACON_KEY_LEN];
    key[..24].copy_from_slice(&beacon_prefix(epoch, beacon));
    key[24..].copy_from_slice(id.as_bytes());
    key
}

/// The report id at the end of a beacons key, if the key has the right length.
pub fn beacon_report_id(key: &[u8]) -> Option<Hash32> {
    if key.len() != BEACON_KEY_LEN {
        return None;
    }
    let mut id = [0u8; 32];
    id.copy_from_slice(&key[24..]);
    Some(Hash32(id))
}

/// The key of a meter's state: its 32-byte id.
pub fn meter(meter: &MeterId) -> [u8; 32] {
    meter.0
}

/// `start epoch ‖ end epoch` of an anchor covering epochs `start..end`.
pub fn anchor(start_epoch: u64, end_epoch: u64) -> [u8; ANCHOR_KEY_LEN] {
    let mut key = [0u8; ANCHOR_KEY_LEN];
    key[..8].copy_from_slice(&start_epoch.to_be_bytes());
    key[8..].copy_from_slice(&end_epoch.to_be_bytes());
    key
}

/// A step of a consensus round: what a vote is for. The numbers are stored in keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Step {
    /// The round leader's signed proposal (a leader must not propose twice either).
    Propose = 0,
    /// A prevote.
    Prevote = 1,
    /// A precommit.
    Precommit = 2,
}

impl Step {
    /// The step of a stored tag.
    pub fn from_tag(tag: u8) -> Option<Step> {
        match tag {
            0 => Some(Step::Propose),
            1 => Some(Step::Prevote),
            2 => Some(Step::Precommit),
            _ => None,
        }
    }
}

/// Which vote a member casts: one signed vote at most per key, ever.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VoteKey {
    /// The region whose committee votes.
    pub region: Region,
    /// The epoch being decided.
    pub epoch: u64,
    /// The consensus round.
    pub round: u32,
    /// The step within the round.
    pub step: Step,
}

impl VoteKey {
    /// `region ‖ epoch ‖ round ‖ step`.
    pub fn to_bytes(&self) -> [u8; VOTE_KEY_LEN] {
        let mut key = [0u8; VOTE_KEY_LEN];
        key[..16].copy_from_slice(&region_epoch(self.region, self.epoch));
        key[16..20].copy_from_slice(&self.round.to_be_bytes());
        key[20] = self.step as u8;
        key
    }

    /// Parses a stored vote key; `None` when its length or step tag is wrong.
    pub fn from_bytes(key: &[u8]) -> Option<VoteKey> {
        let key: &[u8; VOTE_KEY_LEN] = key.try_into().ok()?;
        let (region, rest) = key.split_first_chunk::<8>()?;
        let (epoch, rest) = rest.split_first_chunk::<8>()?;
        let (round, rest) = rest.split_first_chunk::<4>()?;
        Some(VoteKey {
            region: Region(u64::from_be_bytes(*region)),
            epoch: u64::from_be_bytes(*epoch),
            round: u32::from_be_bytes(*round),
            step: Step::from_tag(*rest.first()?)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vote_keys_round_trip_and_sort_by_round_then_step() {
        let a = VoteKey { region: Region(7), epoch: 3, round: 1, step: Step::Precommit };
        let b = VoteKey { region: Region(7), epoch: 3, round: 2, step: Step::Propose };
        assert_eq!(VoteKey::from_bytes(&a.to_bytes()), Some(a));
        assert!(a.to_bytes() < b.to_bytes());
    }

    #[test]
    fn vote_keys_with_unknown_step_or_length_are_refused() {
        let mut bytes = VoteKey { region: Region(1), epoch: 2, round: 3, step: Step::Prevote }.to_bytes();
        bytes[20] = 9;
        assert_eq!(VoteKey::from_bytes(&bytes), None);
        assert_eq!(VoteKey::from_bytes(&bytes[..20]), None);
    }

    #[test]
    fn report_keys_sort_by_region_then_epoch_then_id() {
        let low = report(Region(1), 256, &Hash32([0xff; 32]));
        let high = report(Region(1), 257, &Hash32::ZERO);
        assert!(low < high);
        assert_eq!(report_id(&low), Some(Hash32([0xff; 32])));
    }
}
