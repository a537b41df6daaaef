//! The records stored as values, and their size limits.
//!
//! Every record is encoded by [`meshd_protocol::codec::encode_record`] and
//! decoded by [`meshd_protocol::codec::decode_record`], with the limit below
//! (the limit bounds what a damaged record can make the decoder allocate).
//! Reports and beacons are stored as encoded envelopes
//! ([`codec::encode_envelope`]), exactly as they travel.
//!
//! Changing a record's fields changes its encoding: that is a new
//! [`SCHEMA_VERSION`](crate::SCHEMA_VERSION) with a migration.

use bincode::{Decode, Encode};
use meshd_protocol::codec::{self, CERTIFICATE_LIMIT, CodecError, EPOCH_SUMMARY_LIMIT};
use meshd_protocol::geo::Region;
use meshd_protocol::merkle::{self, AnchorLeaf, MerkleTree};
use meshd_protocol::message::{Certificate, EpochSummary};
use meshd_protocol::{GatewayId, Hash32, MeterId};

/// Limit of a [`MeterState`]: its fixed encoding is four `u64`s, 32 bytes.
pub const METER_STATE_LIMIT: usize = 4 * 8;

/// Limit of a [`FinalizedSummary`]: each half within its wire limit.
pub const FINALIZED_SUMMARY_LIMIT: usize = EPOCH_SUMMARY_LIMIT + CERTIFICATE_LIMIT;

/// Limit of an [`AnchorRecord`]: two epochs (16), the root (32), an optional
/// transaction hash (1 + 32) and an optional block number (1 + 8) at most.
pub const ANCHOR_RECORD_LIMIT: usize = 16 + 32 + 33 + 9;

/// Limit of the schema version in the meta tree: one `u32`.
pub const SCHEMA_VERSION_LIMIT: usize = 4;

/// The most entries each list of a [`Settlement`] may hold: 1,440, four
/// times an epoch's report cap of 360, so that a decided list split into
/// proposal parts (up to four, as planned in meshd-node) still fits.
pub const SETTLEMENT_MAX_ENTRIES: usize = 4 * 360;

/// Limit of a [`Settlement`]: region and epoch (16), three list lengths
/// (8 each), then every list full: report ids of 32 bytes, rewards and
/// energy entries of 40 (a 32-byte id and a `u64`).
pub const SETTLEMENT_LIMIT: usize = 16 + 3 * 8 + SETTLEMENT_MAX_ENTRIES * (32 + 40 + 40);

/// The most leaves an [`AnchorSet`] may hold: 65,536, one per region and
/// epoch of a range, e.g. 2,730 regions anchored every 24 epochs. Bounds one
/// record to about 9.5 MB; a network with more regions anchors more often.
pub const ANCHOR_SET_MAX_LEAVES: usize = 1 << 16;

/// Limit of an [`AnchorSet`]: two epochs and the root (48), the list length
/// (8) and every leaf full (region, epoch and four hashes: 144).
pub const ANCHOR_SET_LIMIT: usize = 48 + 8 + ANCHOR_SET_MAX_LEAVES * 144;

/// What a gateway remembers about a meter between readings: enough to check
/// the next reading (sequence and register move forward) and to issue energy
/// certificates in whole units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Encode, Decode)]
pub struct MeterState {
    /// Sequence number of the last accepted reading.
    pub last_sequence: u64,
    /// End of the last accepted reading's interval, Unix s.
    pub last_interval_end_s: u64,
    /// Register at the end of the last accepted reading, Wh.
    pub last_register_wh: u64,
    /// Attested energy not yet issued as a certificate (below 1 MWh), Wh.
    pub carried_wh: u64,
}

/// A region's decided summary of one epoch with the certificate that makes it final.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct FinalizedSummary {
    /// The decided summary.
    pub summary: EpochSummary,
    /// 2f+1 committee signatures over its hash.
    pub certificate: Certificate,
}

impl FinalizedSummary {
    /// Checks that the certificate is for this summary (same region, epoch and
    /// hash). Signatures are not checked here: that needs the committee.
    pub fn check_consistent(&self) -> Result<(), String> {
        let (summary, certificate) = (&self.summary, &self.certificate);
        if summary.region != certificate.region || summary.epoch != certificate.epoch {
            return Err(format!(
                "the certificate is for region {:#x} epoch {}, the summary for region {:#x} epoch {}",
                certificate.region.0, certificate.epoch, summary.region.0, summary.epoch
            ));
        }
        let hash = codec::summary_hash(summary).map_err(|e| e.to_string())?;
        if hash != certificate.summary {
            return Err(format!(
                "the certificate is for summary {}, but the summary's hash is {hash}",
                certificate.summary
            ));
        }
        Ok(())
    }
}

/// What a decided summary settled: the lists its three roots are built
/// over, kept so that anyone holding the store can prove a report, a reward
/// or a meter's energy under an anchored root without recomputing the epoch.
/// Only a gateway that judged the decided proposal (a committee member
/// holding its reports) has one; the lists are in the order of their trees'
/// leaves (ids ascending).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Settlement {
    /// The region.
    pub region: Region,
    /// The epoch.
    pub epoch: u64,
    /// The accepted reports' ids (the leaves of `reports_root`).
    pub report_ids: Vec<Hash32>,
    /// Every rewarded gateway with its units (the leaves of `rewards_root`).
    pub rewards: Vec<(GatewayId, u64)>,
    /// Every credited meter with its Wh (the leaves of `energy_root`).
    pub energy: Vec<(MeterId, u64)>,
}

impl Settlement {
    /// Checks that the lists rebuild the roots of `summary` (same region and
    /// epoch too): a settlement that does not is never stored.
    pub fn check_against(&self, summary: &EpochSummary) -> Result<(), String> {
        if (self.region, self.epoch) != (summary.region, summary.epoch) {
            return Err(format!(
                "the settlement is for region {:#x} epoch {}, the summary for region {:#x} epoch {}",
                self.region.0, self.epoch, summary.region.0, summary.epoch
            ));
        }
        let roots = [
            (
                "reports_root",
                summary.reports_root,
                MerkleTree::new(self.report_ids.iter().map(merkle::report_leaf)),
            ),
            (
                "rewards_root",
                summary.rewards_root,
                MerkleTree::new(self.rewards.iter().map(|(g, u)| merkle::reward_leaf(g, *u))),
            ),
            (
                "energy_root",
                summary.energy_root,
                MerkleTree::new(self.energy.iter().map(|(m, wh)| merkle::energy_leaf(m, *wh))),
            ),
        ];
        for (name, expected, tree) in roots {
            if tree.root() != expected {
                return Err(format!(
                    "the settlement's list rebuilds {name} {}, the summary has {expected}",
                    tree.root()
                ));
            }
        }
        Ok(())
    }
}

/// An anchor of epochs `start_epoch..end_epoch` on the EVM chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub struct AnchorRecord {
    /// First epoch covered.
    pub start_epoch: u64,
    /// First epoch after the covered ones.
    pub end_epoch: u64,
    /// Merkle root over the finalized summaries of the covered epochs.
    pub root: Hash32,
    /// Hash of the submitting transaction, once one was sent.
    pub tx_hash: Option<Hash32>,
    /// Number of the block that included it, once seen.
    pub block_number: Option<u64>,
}

/// The summary leaves an anchor committee member signed a root over, for
/// one epoch range: every region's certified summaries of those epochs as
/// the gateway held them (meshd-node's anchor book). Written before the
/// signature is published, so that a restarted gateway signs the same root
/// again and never another, and so that anyone holding the store can prove a
/// summary of any region under the anchored root.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct AnchorSet {
    /// First epoch of the range.
    pub from_epoch: u64,
    /// Last epoch of the range (inclusive).
    pub to_epoch: u64,
    /// The root signed: the Merkle root over the leaves.
    pub root: Hash32,
    /// The leaves, by epoch then region.
    pub leaves: Vec<AnchorLeaf>,
}

impl AnchorSet {
    /// Checks that the leaves lie in the range and rebuild the root.
    pub fn check(&self) -> Result<(), String> {
        if self.from_epoch > self.to_epoch {
            return Err(format!(
                "an anchor set covers epochs {}..={}: empty",
                self.from_epoch, self.to_epoch
            ));
        }
        if let Some(leaf) = self.leaves.iter().find(|l| l.epoch < self.from_epoch || l.epoch > self.to_epoch)
        {
            return Err(format!(
                "a leaf of epoch {} lies outside epochs {}..={}",
                leaf.epoch, self.from_epoch, self.to_epoch
            ));
        }
        let rebuilt = MerkleTree::new(self.leaves.iter().map(AnchorLeaf::hash)).root();
        if rebuilt != self.root {
            return Err(format!("the leaves rebuild root {rebuilt}, the set says {}", self.root));
        }
        Ok(())
    }
}

/// A value with one encoding and a size limit, stored through the codec.
pub(crate) trait Record: Sized {
    /// What it is called in messages.
    const WHAT: &'static str;
    /// Encodes it with the codec.
    fn to_bytes(&self) -> Result<Vec<u8>, CodecError>;
    /// Decodes stored bytes with the codec.
    fn from_bytes(bytes: &[u8]) -> Result<Self, CodecError>;
}

macro_rules! record {
    ($type:ty, $limit:expr, $what:literal) => {
        impl Record for $type {
            const WHAT: &'static str = $what;
            fn to_bytes(&self) -> Result<Vec<u8>, CodecError> {
                codec::encode_record::<_, { $limit }>(self, Self::WHAT)
            }
            fn from_bytes(bytes: &[u8]) -> Result<Self, CodecError> {
                codec::decode_record::<_, { $limit }>(bytes, Self::WHAT)
            }
        }
    };
}

record!(MeterState, METER_STATE_LIMIT, "meter_state");
record!(FinalizedSummary, FINALIZED_SUMMARY_LIMIT, "finalized_summary");
record!(AnchorRecord, ANCHOR_RECORD_LIMIT, "anchor_record");
record!(u32, SCHEMA_VERSION_LIMIT, "schema_version");
record!(Settlement, SETTLEMENT_LIMIT, "settlement");
record!(AnchorSet, ANCHOR_SET_LIMIT, "anchor_set");

#[cfg(test)]
mod tests {
    use meshd_protocol::GatewayId;
    use meshd_protocol::codec::MAX_COMMITTEE;
    use meshd_protocol::geo::Region;
    use meshd_protocol::message::CommitSignature;

    use super::*;

    #[test]
    fn meter_state_limit_is_its_encoded_size() {
        let state = MeterState { last_sequence: u64::MAX, ..MeterState::default() };
        assert_eq!(state.to_bytes().map(|b| b.len()), Ok(METER_STATE_LIMIT));
    }

    #[test]
    fn anchor_limit_is_the_size_of_a_complete_anchor() {
        let anchor = AnchorRecord {
            start_epoch: 1,
            end_epoch: 2,
            root: Hash32([1; 32]),
            tx_hash: Some(Hash32([2; 32])),
            block_number: Some(3),
        };
        assert_eq!(anchor.to_bytes().map(|b| b.len()), Ok(ANCHOR_RECORD_LIMIT));
        assert_eq!(AnchorRecord::from_bytes(&anchor.to_bytes().unwrap_or_default()), Ok(anchor));
    }

    #[test]
    fn a_summary_with_a_full_committee_certificate_fits_its_limit() {
        let summary = EpochSummary {
            region: Region(1),
            epoch: 2,
            previous: Hash32::ZERO,
            reports_root: Hash32::ZERO,
            rewards_root: Hash32::ZERO,
            energy_root: Hash32::ZERO,
            beacon_count: 0,
            witness_count: 0,
            attestation_count: 0,
            reward_units: 0,
            energy_wh: 0,
            committee_hash: Hash32::ZERO,
        };
        let signature = CommitSignature { signer: GatewayId([3; 32]), signature: [4; 64] };
        let certificate = Certificate {
            region: Region(1),
            epoch: 2,
            round: 0,
            summary: Hash32::ZERO,
            signatures: vec![signature; MAX_COMMITTEE],
        };
        let finalized = FinalizedSummary { summary, certificate };
        let bytes = finalized.to_bytes().expect("a full certificate fits");
        assert_eq!(FinalizedSummary::from_bytes(&bytes), Ok(finalized));
    }
}
