//! keccak256 Merkle trees whose roots and proofs verify on-chain.
//!
//! The tree is built exactly as OpenZeppelin's `StandardMerkleTree`
//! (`@openzeppelin/merkle-tree`) builds it, so our root equals the root that
//! library computes for the same values and our proofs pass Solidity's
//! `MerkleProof.verify`:
//!
//! - **Leaves** are double-hashed ABI encodings: `keccak256(keccak256(abi.encode(values)))`
//!   ([`leaf_hash`]). The inner hash makes a leaf preimage 32 bytes, never the
//!   64 bytes of an inner node, so an inner node cannot be passed off as a leaf.
//! - **Inner nodes** hash the sorted pair: `keccak256(min(a, b) ‖ max(a, b))`
//!   ([`hash_pair`]). Sorting lets a proof be a plain list of siblings, with no
//!   left/right flags.
//! - **Layout**: the leaf hashes are sorted ascending and stored at the end of a
//!   `2n − 1` array, leaf `i` of the sorted list at position `2n − 2 − i`; node
//!   `k`'s children are `2k + 1` and `2k + 2`, the root is node 0. The order in
//!   which leaves are given therefore does not change the root.
//!
//! The three leaf types meshd anchors have a helper each: [`report_leaf`]
//! `(bytes32 reportId)`, [`reward_leaf`] `(bytes32 gatewayId, uint256 units)`
//! and [`energy_leaf`] `(bytes32 meterId, uint256 wh)`. A contract recomputes the
//! leaf with `keccak256(bytes.concat(keccak256(abi.encode(id, amount))))` and
//! calls `MerkleProof.verify(proof, root, leaf)`.
//!
//! # The empty tree
//!
//! OpenZeppelin refuses to build a tree without leaves. meshd needs a root for
//! an epoch that accepted nothing, and uses [`Hash32::ZERO`]: no proof verifies
//! against it (a proof's result is a keccak256 output or the leaf itself, and
//! [`verify`] refuses a zero root outright), so "nothing to prove" can never be
//! turned into a claim. Contracts must likewise treat a zero root as empty.

use crate::geo::Region;
use crate::hash::{Hash32, keccak256, keccak256_concat};
use crate::id::{GatewayId, MeterId};
use crate::message::EpochSummary;

/// One static ABI value: every value meshd puts in a leaf is one 32-byte word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbiValue {
    /// A Solidity `bytes32`.
    Bytes32([u8; 32]),
    /// A Solidity `uint256` (our amounts fit 128 bits).
    Uint(u128),
}

impl AbiValue {
    /// The 32-byte ABI word: `bytes32` as is, `uint256` big-endian, left-padded with zeros.
    pub fn word(&self) -> [u8; 32] {
        match self {
            AbiValue::Bytes32(bytes) => *bytes,
            AbiValue::Uint(value) => {
                let mut word = [0u8; 32];
                word[16..].copy_from_slice(&value.to_be_bytes());
                word
            }
        }
    }
}

/// `abi.encode(values…)` for static types: the values' words, concatenated.
pub fn abi_encode(values: &[AbiValue]) -> Vec<u8> {
    values.iter().flat_map(|v| v.word()).collect()
}

/// A `StandardMerkleTree` leaf: `keccak256(keccak256(abi.encode(values…)))`.
pub fn leaf_hash(values: &[AbiValue]) -> Hash32 {
    keccak256(keccak256(abi_encode(values)).0)
}

/// The leaf of an accepted report id: `(bytes32 reportId)`.
pub fn report_leaf(report_id: &Hash32) -> Hash32 {
    leaf_hash(&[AbiValue::Bytes32(report_id.0)])
}

/// The leaf of a gateway's reward: `(bytes32 gatewayId, uint256 units)`, the
/// gateway id being its 32-byte ed25519 key.
pub fn reward_leaf(gateway: &GatewayId, units: u64) -> Hash32 {
    leaf_hash(&[AbiValue::Bytes32(gateway.0), AbiValue::Uint(u128::from(units))])
}

/// The leaf of a meter's energy: `(bytes32 meterId, uint256 wh)`, the meter id
/// being its 32-byte ed25519 key.
pub fn energy_leaf(meter: &MeterId, wh: u64) -> Hash32 {
    leaf_hash(&[AbiValue::Bytes32(meter.0), AbiValue::Uint(u128::from(wh))])
}

/// The leaf of a finalized summary in an anchored range's tree (docs/chain.md §5):
/// `(uint64 region, uint64 epoch, bytes32 summaryHash, bytes32 reportsRoot,
/// bytes32 rewardsRoot, bytes32 energyRoot)`, where `summary_hash` is
/// `codec::summary_hash(summary)` (passed in: the caller already has it).
pub fn summary_leaf(summary: &EpochSummary, summary_hash: &Hash32) -> Hash32 {
    AnchorLeaf::of(summary, *summary_hash).hash()
}

/// The fields of a summary leaf: what an anchored range's tree holds of one
/// region's finalized summary, and all a proof needs of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, bincode::Encode, bincode::Decode)]
pub struct AnchorLeaf {
    /// The region.
    pub region: Region,
    /// The epoch.
    pub epoch: u64,
    /// `codec::summary_hash` of the summary.
    pub summary_hash: Hash32,
    /// The summary's reports root.
    pub reports_root: Hash32,
    /// The summary's rewards root.
    pub rewards_root: Hash32,
    /// The summary's energy root.
    pub energy_root: Hash32,
}

impl AnchorLeaf {
    /// The leaf fields of `summary`, whose hash is `summary_hash`.
    pub fn of(summary: &EpochSummary, summary_hash: Hash32) -> AnchorLeaf {
        AnchorLeaf {
            region: summary.region,
            epoch: summary.epoch,
            summary_hash,
            reports_root: summary.reports_root,
            rewards_root: summary.rewards_root,
            energy_root: summary.energy_root,
        }
    }

    /// The leaf hash.
    pub fn hash(&self) -> Hash32 {
        leaf_hash(&[
            AbiValue::Uint(u128::from(self.region.0)),
            AbiValue::Uint(u128::from(self.epoch)),
            AbiValue::Bytes32(self.summary_hash.0),
            AbiValue::Bytes32(self.reports_root.0),
            AbiValue::Bytes32(self.rewards_root.0),
            AbiValue::Bytes32(self.energy_root.0),
        ])
    }
}

/// An inner node: keccak256 of the two children, smaller first (OpenZeppelin's
/// `Hashes.commutativeKeccak256`).
pub fn hash_pair(a: &Hash32, b: &Hash32) -> Hash32 {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    keccak256_concat(&[&lo.0, &hi.0])
}

/// The root a proof leads to from a leaf (`MerkleProof.processProof`).
pub fn process_proof(proof: &[Hash32], leaf: &Hash32) -> Hash32 {
    proof.iter().fold(*leaf, |node, sibling| hash_pair(&node, sibling))
}

/// Whether `proof` proves `leaf` (a leaf hash) under `root` (`MerkleProof.verify`);
/// always false for the empty tree's root, [`Hash32::ZERO`].
pub fn verify(proof: &[Hash32], root: &Hash32, leaf: &Hash32) -> bool {
    *root != Hash32::ZERO && process_proof(proof, leaf) == *root
}

/// Why a proof could not be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The index is not below the number of leaves.
    #[error("leaf index {index} is out of range for a tree of {len} leaves")]
    IndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// The number of leaves.
        len: usize,
    },
    /// No leaf has this hash.
    #[error("the tree has no leaf {0}")]
    UnknownLeaf(Hash32),
}

/// A Merkle tree over leaf hashes, laid out as OpenZeppelin's `StandardMerkleTree`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MerkleTree {
    /// `2n − 1` nodes, the root first (empty when there are no leaves).
    nodes: Vec<Hash32>,
    /// For each leaf in the order given, its position in `nodes`.
    positions: Vec<usize>,
}

impl MerkleTree {
    /// Builds the tree of `leaves`, leaf hashes such as [`report_leaf`] returns.
    ///
    /// Giving the double-hashed leaves reproduces `StandardMerkleTree.of(values, types)`;
    /// giving raw `bytes32` values reproduces `SimpleMerkleTree.of(values)`.
    pub fn new(leaves: impl IntoIterator<Item = Hash32>) -> MerkleTree {
        let leaves: Vec<Hash32> = leaves.into_iter().collect();
        let n = leaves.len();
        if n == 0 {
            return MerkleTree { nodes: Vec::new(), positions: Vec::new() };
        }
        // Stable sort, as the reference's `Array.prototype.sort`: equal hashes
        // keep the order they were given in.
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| leaves[a].cmp(&leaves[b]));
        let len = 2 * n - 1;
        let mut nodes = vec![Hash32::ZERO; len];
        let mut positions = vec![0; n];
        for (sorted, &given) in order.iter().enumerate() {
            let position = len - 1 - sorted;
            nodes[position] = leaves[given];
            positions[given] = position;
        }
        for k in (0..n - 1).rev() {
            nodes[k] = hash_pair(&nodes[2 * k + 1], &nodes[2 * k + 2]);
        }
        MerkleTree { nodes, positions }
    }

    /// The root, or [`Hash32::ZERO`] for a tree without leaves (see the module docs).
    pub fn root(&self) -> Hash32 {
        self.nodes.first().copied().unwrap_or(Hash32::ZERO)
    }

    /// The number of leaves.
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    /// Whether the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// The leaf given at `index`.
    pub fn leaf(&self, index: usize) -> Option<Hash32> {
        self.positions.get(index).map(|&p| self.nodes[p])
    }

    /// The proof of the leaf given at `index`: its siblings from the bottom up.
    pub fn proof(&self, index: usize) -> Result<Vec<Hash32>, ProofError> {
        let mut position =
            *self.positions.get(index).ok_or(ProofError::IndexOutOfRange { index, len: self.len() })?;
        let mut proof = Vec::new();
        while position > 0 {
            let sibling = if position % 2 == 1 { position + 1 } else { position - 1 };
            proof.push(self.nodes[sibling]);
            position = (position - 1) / 2;
        }
        Ok(proof)
    }

    /// The proof of the first leaf equal to `leaf`.
    pub fn proof_of(&self, leaf: &Hash32) -> Result<Vec<Hash32>, ProofError> {
        let index = self
            .positions
            .iter()
            .position(|&p| self.nodes[p] == *leaf)
            .ok_or(ProofError::UnknownLeaf(*leaf))?;
        self.proof(index)
    }
}

#[cfg(test)]
mod tests;
