//! Proofs that a report, a reward or a meter's energy is under an anchored
//! root, in the JSON form `meshd prove` writes and `meshd verify`,
//! `meshd chain claim` and `meshd chain mint` read (docs/chain.md §12).
//!
//! A proof is two Merkle proofs (OpenZeppelin `StandardMerkleTree`, see
//! [`meshd_protocol::merkle`]): the summary leaf under the root anchored for
//! the range, then the item's leaf under the summary's `reportsRoot`,
//! `rewardsRoot` or `energyRoot`. [`Proof::build`] and [`Proof::check`] are
//! pure; [`verify_on_chain`], [`claim`] and [`mint`] talk to the chain.
//!
//! ```json
//! {
//!   "version": 1,
//!   "range": { "from": 0, "to": 3 },
//!   "anchored_root": "0x…",
//!   "summary": { "region": 622236750694711295, "epoch": 2, "summary_hash": "0x…",
//!                "reports_root": "0x…", "rewards_root": "0x…", "energy_root": "0x…" },
//!   "summary_proof": ["0x…"],
//!   "item": { "kind": "report", "report_id": "0x…" },
//!   "item_proof": ["0x…"]
//! }
//! ```
//!
//! `item` is one of `{"kind": "report", "report_id"}`,
//! `{"kind": "reward", "gateway_id", "units"}` or `{"kind": "energy", "meter_id", "wh"}`
//! (ids as 32-byte hex, amounts as JSON integers).

use alloy::network::{Ethereum, EthereumWallet};
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{ProviderBuilder, RootProvider};
use alloy::signers::local::PrivateKeySigner;
use meshd_protocol::codec;
use meshd_protocol::hash::Hash32;
use meshd_protocol::id::{GatewayId, MeterId};
use meshd_protocol::merkle::{self, MerkleTree};
use meshd_protocol::message::EpochSummary;
use serde::{Deserialize, Serialize};

use crate::bindings::anchor::EpochAnchor;
use crate::bindings::certificate::EnergyCertificate;
use crate::bindings::distributor::RewardDistributor;
use crate::digest::EpochRange;

/// The proof format version this code writes and reads.
pub const PROOF_VERSION: u32 = 1;

/// An epoch range in a proof.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    /// First epoch.
    pub from: u64,
    /// Last epoch (inclusive).
    pub to: u64,
}

/// The summary leaf's fields (`AnchoredSummary.Summary`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryLeaf {
    /// The region's H3 cell.
    pub region: u64,
    /// The epoch.
    pub epoch: u64,
    /// `codec::summary_hash` of the summary.
    pub summary_hash: Hash32,
    /// Root of the accepted report ids.
    pub reports_root: Hash32,
    /// Root of the rewards.
    pub rewards_root: Hash32,
    /// Root of the energy.
    pub energy_root: Hash32,
}

impl SummaryLeaf {
    /// The leaf's fields of a finalized summary.
    pub fn of(summary: &EpochSummary) -> Result<SummaryLeaf, codec::CodecError> {
        Ok(SummaryLeaf {
            region: summary.region.0,
            epoch: summary.epoch,
            summary_hash: codec::summary_hash(summary)?,
            reports_root: summary.reports_root,
            rewards_root: summary.rewards_root,
            energy_root: summary.energy_root,
        })
    }

    /// The fields of a summary leaf as the anchoring gateway stored them.
    pub fn from_anchored(leaf: &merkle::AnchorLeaf) -> SummaryLeaf {
        SummaryLeaf {
            region: leaf.region.0,
            epoch: leaf.epoch,
            summary_hash: leaf.summary_hash,
            reports_root: leaf.reports_root,
            rewards_root: leaf.rewards_root,
            energy_root: leaf.energy_root,
        }
    }

    /// The leaf hash, as `AnchoredSummary.leaf` computes it.
    pub fn hash(&self) -> Hash32 {
        merkle::AnchorLeaf {
            region: meshd_protocol::geo::Region(self.region),
            epoch: self.epoch,
            summary_hash: self.summary_hash,
            reports_root: self.reports_root,
            rewards_root: self.rewards_root,
            energy_root: self.energy_root,
        }
        .hash()
    }

    fn abi(&self) -> crate::bindings::distributor::AnchoredSummary::Summary {
        crate::bindings::distributor::AnchoredSummary::Summary {
            region: self.region,
            epoch: self.epoch,
            summaryHash: B256::from(self.summary_hash.0),
            reportsRoot: B256::from(self.reports_root.0),
            rewardsRoot: B256::from(self.rewards_root.0),
            energyRoot: B256::from(self.energy_root.0),
        }
    }
}

/// What is proven.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Item {
    /// An accepted report.
    Report {
        /// The report's id (keccak256 of its envelope).
        report_id: Hash32,
    },
    /// A gateway's reward units.
    Reward {
        /// The gateway (ed25519 key).
        gateway_id: Hash32,
        /// Reward sub-units.
        units: u64,
    },
    /// A meter's energy.
    Energy {
        /// The meter (ed25519 key).
        meter_id: Hash32,
        /// Wh.
        wh: u64,
    },
}

impl Item {
    /// The item's leaf hash.
    pub fn leaf(&self) -> Hash32 {
        match self {
            Item::Report { report_id } => merkle::report_leaf(report_id),
            Item::Reward { gateway_id, units } => merkle::reward_leaf(&GatewayId(gateway_id.0), *units),
            Item::Energy { meter_id, wh } => merkle::energy_leaf(&MeterId(meter_id.0), *wh),
        }
    }

    /// The summary's root the item is under.
    pub fn inner_root(&self, summary: &SummaryLeaf) -> Hash32 {
        match self {
            Item::Report { .. } => summary.reports_root,
            Item::Reward { .. } => summary.rewards_root,
            Item::Energy { .. } => summary.energy_root,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Item::Report { .. } => "reports_root",
            Item::Reward { .. } => "rewards_root",
            Item::Energy { .. } => "energy_root",
        }
    }
}

/// A proof of an item under an anchored root. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proof {
    /// [`PROOF_VERSION`].
    pub version: u32,
    /// The anchored range.
    pub range: Range,
    /// The root over the range's summary leaves.
    pub anchored_root: Hash32,
    /// The summary holding the item.
    pub summary: SummaryLeaf,
    /// The summary leaf's proof under `anchored_root`.
    pub summary_proof: Vec<Hash32>,
    /// The item.
    pub item: Item,
    /// The item leaf's proof under the summary's inner root.
    pub item_proof: Vec<Hash32>,
}

/// Why a proof could not be built or does not hold.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The summaries given are not exactly one per epoch of the range.
    #[error("{range} needs one finalized summary per epoch; epoch {epoch} has none")]
    MissingSummary {
        /// The range.
        range: EpochRange,
        /// The first epoch without one.
        epoch: u64,
    },
    /// The summary of the item's epoch is not among the range's.
    #[error("epoch {epoch} is outside {range}")]
    EpochOutsideRange {
        /// The epoch.
        epoch: u64,
        /// The range.
        range: EpochRange,
    },
    /// The inner leaves given do not rebuild the summary's root.
    #[error("the {count} leaves rebuild {what} {rebuilt}, but the summary has {expected}")]
    InnerRootMismatch {
        /// Which root.
        what: &'static str,
        /// How many leaves were given.
        count: usize,
        /// The root they give.
        rebuilt: Hash32,
        /// The summary's.
        expected: Hash32,
    },
    /// The item is not among the leaves.
    #[error("the item is not in the summary's {0}")]
    NotInTree(&'static str),
    /// A summary could not be encoded (never for a valid summary).
    #[error("summary encoding failed: {0}")]
    Codec(#[from] codec::CodecError),
    /// The proof's version is not [`PROOF_VERSION`].
    #[error("proof version {0} is not supported (this meshd reads version {PROOF_VERSION})")]
    Version(u32),
    /// The summary leaf does not lead to the anchored root.
    #[error("the summary proof does not lead to the anchored root {0}")]
    BadSummaryProof(Hash32),
    /// The item leaf does not lead to the summary's root.
    #[error("the item proof does not lead to the summary's {0}")]
    BadItemProof(&'static str),
    /// The chain holds another root (or none) for the range.
    #[error("the chain anchors {on_chain} for {range}, the proof claims {claimed}")]
    RootMismatch {
        /// The range.
        range: EpochRange,
        /// What `rootOf` returned (zero: not anchored).
        on_chain: Hash32,
        /// The proof's root.
        claimed: Hash32,
    },
}

impl Proof {
    /// Builds the proof of `item` in the summary of `epoch`, given the
    /// range's finalized summaries of a single region (one per epoch: the
    /// anchored leaves when only that region anchors) and every leaf of the
    /// item's inner tree (e.g. every accepted report id's
    /// [`merkle::report_leaf`]), checking that they rebuild the summary's root.
    pub fn build(
        range: EpochRange,
        summaries: &[EpochSummary],
        epoch: u64,
        item: Item,
        inner_leaves: &[Hash32],
    ) -> Result<Proof, ProofError> {
        let mut leaves = Vec::with_capacity(summaries.len());
        for e in range.from..=range.to {
            let summary = summaries
                .iter()
                .find(|s| s.epoch == e)
                .ok_or(ProofError::MissingSummary { range, epoch: e })?;
            leaves.push(SummaryLeaf::of(summary)?);
        }
        let region = leaves.first().map_or(0, |l| l.region);
        Proof::build_over(range, &leaves, region, epoch, item, inner_leaves)
    }

    /// Builds the proof of `item` in the summary of `region` and `epoch`,
    /// given every summary leaf the range's root was signed over (all
    /// regions: what the anchoring gateway stored) and every leaf of the
    /// item's inner tree, checking that they rebuild the summary's root.
    pub fn build_over(
        range: EpochRange,
        leaves: &[SummaryLeaf],
        region: u64,
        epoch: u64,
        item: Item,
        inner_leaves: &[Hash32],
    ) -> Result<Proof, ProofError> {
        if epoch < range.from || epoch > range.to {
            return Err(ProofError::EpochOutsideRange { epoch, range });
        }
        let index = leaves
            .iter()
            .position(|l| l.region == region && l.epoch == epoch)
            .ok_or(ProofError::MissingSummary { range, epoch })?;
        let summary = leaves[index];
        let outer = MerkleTree::new(leaves.iter().map(SummaryLeaf::hash));
        let summary_proof = outer.proof(index).map_err(|_| ProofError::MissingSummary { range, epoch })?;

        let inner = MerkleTree::new(inner_leaves.iter().copied());
        let expected = item.inner_root(&summary);
        if inner.root() != expected {
            return Err(ProofError::InnerRootMismatch {
                what: item.name(),
                count: inner_leaves.len(),
                rebuilt: inner.root(),
                expected,
            });
        }
        let item_proof = inner.proof_of(&item.leaf()).map_err(|_| ProofError::NotInTree(item.name()))?;
        Ok(Proof {
            version: PROOF_VERSION,
            range: Range { from: range.from, to: range.to },
            anchored_root: outer.root(),
            summary,
            summary_proof,
            item,
            item_proof,
        })
    }

    /// The range.
    pub fn epoch_range(&self) -> EpochRange {
        EpochRange { from: self.range.from, to: self.range.to }
    }

    /// Checks the proof off-chain: version, the summary's epoch in the range,
    /// the summary leaf under `anchored_root` and the item under its inner root.
    pub fn check(&self) -> Result<(), ProofError> {
        if self.version != PROOF_VERSION {
            return Err(ProofError::Version(self.version));
        }
        let range = self.epoch_range();
        if self.summary.epoch < range.from || self.summary.epoch > range.to {
            return Err(ProofError::EpochOutsideRange { epoch: self.summary.epoch, range });
        }
        if !merkle::verify(&self.summary_proof, &self.anchored_root, &self.summary.hash()) {
            return Err(ProofError::BadSummaryProof(self.anchored_root));
        }
        if !merkle::verify(&self.item_proof, &self.item.inner_root(&self.summary), &self.item.leaf()) {
            return Err(ProofError::BadItemProof(self.item.name()));
        }
        Ok(())
    }
}

/// Why a chain operation on a proof failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainProofError {
    /// The proof itself does not hold, or not against the chain's root.
    #[error(transparent)]
    Proof(#[from] ProofError),
    /// The proof is of another kind than the operation needs.
    #[error("a {wanted} needs a {kind} proof")]
    WrongKind {
        /// The operation.
        wanted: &'static str,
        /// The proof kind needed.
        kind: &'static str,
    },
    /// A call or transaction failed (the revert reason, when the contract gave one, is in the message).
    #[error("{operation} failed: {source}")]
    Call {
        /// What was asked.
        operation: &'static str,
        /// Why.
        #[source]
        source: alloy::contract::Error,
    },
    /// The transaction was mined but reverted.
    #[error("{operation} reverted in transaction {tx}")]
    Reverted {
        /// What was sent.
        operation: &'static str,
        /// The transaction.
        tx: B256,
    },
    /// Waiting for the receipt failed.
    #[error("{operation} was not confirmed: {source}")]
    Receipt {
        /// What was sent.
        operation: &'static str,
        /// Why.
        #[source]
        source: alloy::providers::PendingTransactionError,
    },
}

/// Checks `proof` against the root `EpochAnchor` at `anchor` holds for its
/// range (read at the head), then off-chain. Returns the anchored root.
pub async fn verify_on_chain(
    rpc_url: crate::Url,
    anchor: Address,
    proof: &Proof,
) -> Result<Hash32, ChainProofError> {
    proof.check()?;
    let contract = EpochAnchor::new(anchor, RootProvider::<Ethereum>::new_http(rpc_url));
    let range = proof.epoch_range();
    let on_chain = contract
        .rootOf(range.from, range.to)
        .call()
        .await
        .map_err(|source| ChainProofError::Call { operation: "EpochAnchor.rootOf", source })?;
    let on_chain = Hash32(on_chain.0);
    if on_chain != proof.anchored_root {
        return Err(ProofError::RootMismatch { range, on_chain, claimed: proof.anchored_root }.into());
    }
    Ok(on_chain)
}

/// A transaction's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sent {
    /// The transaction.
    pub tx: B256,
    /// Its block.
    pub block: u64,
    /// Gas used.
    pub gas_used: u64,
}

async fn confirm(
    operation: &'static str,
    pending: Result<alloy::providers::PendingTransactionBuilder<Ethereum>, alloy::contract::Error>,
) -> Result<Sent, ChainProofError> {
    let receipt = pending
        .map_err(|source| ChainProofError::Call { operation, source })?
        .get_receipt()
        .await
        .map_err(|source| ChainProofError::Receipt { operation, source })?;
    if !receipt.status() {
        return Err(ChainProofError::Reverted { operation, tx: receipt.transaction_hash });
    }
    Ok(Sent {
        tx: receipt.transaction_hash,
        block: receipt.block_number.unwrap_or_default(),
        gas_used: receipt.gas_used,
    })
}

fn hashes(proof: &[Hash32]) -> Vec<B256> {
    proof.iter().map(|h| B256::from(h.0)).collect()
}

/// Claims the reward a `reward` proof proves from the `RewardDistributor` at
/// `distributor`, paying gas from `payer` (anybody may; the tokens go to the
/// gateway's registered owner).
pub async fn claim(
    rpc_url: crate::Url,
    distributor: Address,
    payer: PrivateKeySigner,
    proof: &Proof,
) -> Result<Sent, ChainProofError> {
    let Item::Reward { gateway_id, units } = proof.item else {
        return Err(ChainProofError::WrongKind { wanted: "claim", kind: "reward" });
    };
    proof.check()?;
    let provider = ProviderBuilder::new().wallet(EthereumWallet::from(payer)).connect_http(rpc_url);
    let contract = RewardDistributor::new(distributor, provider);
    let call = contract.claim(
        proof.range.from,
        proof.range.to,
        proof.summary.abi(),
        hashes(&proof.summary_proof),
        B256::from(gateway_id.0),
        U256::from(units),
        hashes(&proof.item_proof),
    );
    confirm("RewardDistributor.claim", call.send().await).await
}

/// Mints the certificates an `energy` proof earns from the
/// `EnergyCertificate` at `certificate`, paying gas from `payer` (the
/// certificates go to the meter's registered owner).
pub async fn mint(
    rpc_url: crate::Url,
    certificate: Address,
    payer: PrivateKeySigner,
    proof: &Proof,
) -> Result<Sent, ChainProofError> {
    let Item::Energy { meter_id, wh } = proof.item else {
        return Err(ChainProofError::WrongKind { wanted: "mint", kind: "energy" });
    };
    proof.check()?;
    let provider = ProviderBuilder::new().wallet(EthereumWallet::from(payer)).connect_http(rpc_url);
    let contract = EnergyCertificate::new(certificate, provider);
    let s = proof.summary.abi();
    let summary = crate::bindings::certificate::AnchoredSummary::Summary {
        region: s.region,
        epoch: s.epoch,
        summaryHash: s.summaryHash,
        reportsRoot: s.reportsRoot,
        rewardsRoot: s.rewardsRoot,
        energyRoot: s.energyRoot,
    };
    let call = contract.mint(
        proof.range.from,
        proof.range.to,
        summary,
        hashes(&proof.summary_proof),
        B256::from(meter_id.0),
        U256::from(wh),
        hashes(&proof.item_proof),
    );
    confirm("EnergyCertificate.mint", call.send().await).await
}
