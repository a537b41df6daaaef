//! The node's durable records in the sled store, and back.
//!
//! | node record | tree | key |
//! |---|---|---|
//! | `Record::Proposal` | votes | `region ‖ epoch ‖ round ‖ 0` |
//! | `Record::Vote` | votes | `region ‖ epoch ‖ round ‖ step` (1 prevote, 2 precommit) |
//! | `Record::Finalized` | summaries | `region ‖ epoch` |
//!
//! Proposals share the votes tree: a leader signs at most one proposal per
//! round, and the store's one-value-per-key rule guards it like a vote.

use meshd_node::{Record, Stored};
use meshd_protocol::envelope::Envelope;
use meshd_protocol::geo::Region;
use meshd_protocol::message::{Message, VoteStep};
use meshd_storage::key::{Step, VoteKey};
use meshd_storage::record::FinalizedSummary;
use meshd_storage::{Batch, Scan, Store, StoreExt, Tree};

/// Why records could not be stored or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordsError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] meshd_storage::Error),
    /// A record the node produced is not what its variant says.
    #[error("a {what} record does not carry a {what}")]
    Mismatch {
        /// The variant.
        what: &'static str,
    },
    /// A stored consensus record is unreadable.
    #[error("stored consensus record under key {key} is unreadable: {reason}")]
    Corrupt {
        /// The key, hex.
        key: String,
        /// Why.
        reason: String,
    },
}

/// The sled key of a signed proposal or vote envelope.
fn consensus_key(envelope: &Envelope) -> Result<VoteKey, RecordsError> {
    match envelope.open() {
        Ok(Message::Vote(vote)) => Ok(VoteKey {
            region: vote.region,
            epoch: vote.epoch,
            round: vote.round,
            step: match vote.step {
                VoteStep::Prevote => Step::Prevote,
                VoteStep::Precommit => Step::Precommit,
            },
        }),
        Ok(Message::Proposal(proposal)) => Ok(VoteKey {
            region: proposal.summary.region,
            epoch: proposal.summary.epoch,
            round: proposal.round,
            step: Step::Propose,
        }),
        _ => Err(RecordsError::Mismatch { what: "vote or proposal" }),
    }
}

/// The batch that makes `records` durable, in one atomic write.
pub fn batch(records: &[Record]) -> Result<Batch, RecordsError> {
    let mut batch = Batch::new();
    for record in records {
        match record {
            Record::Vote(envelope) | Record::Proposal(envelope) => {
                let key = consensus_key(envelope)?;
                let bytes = meshd_protocol::codec::encode_envelope(envelope)
                    .map_err(|e| RecordsError::Corrupt { key: "new".into(), reason: e.to_string() })?;
                batch.put(Tree::Votes, key.to_bytes().to_vec(), bytes);
            }
            Record::Finalized { summary, certificate } => {
                batch.put_summary(&FinalizedSummary {
                    summary: summary.clone(),
                    certificate: certificate.clone(),
                })?;
            }
        }
    }
    Ok(batch)
}

/// What the node persisted for `region`, in the order it needs: finalized
/// summaries by epoch, then its proposals and votes by epoch, round and step.
pub fn load(store: &dyn Store, region: Region) -> Result<Stored, RecordsError> {
    let mut records = Vec::new();
    let prefix = region.0.to_be_bytes();
    for (key, _) in store.scan(Tree::Summaries, &Scan::prefix(&prefix))? {
        let epoch =
            key.get(8..16).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_be_bytes).ok_or_else(
                || RecordsError::Corrupt { key: hex::encode(&key), reason: "short key".into() },
            )?;
        if let Some(finalized) = store.summary(region, epoch)? {
            records
                .push(Record::Finalized { summary: finalized.summary, certificate: finalized.certificate });
        }
    }
    for (key, bytes) in store.scan(Tree::Votes, &Scan::prefix(&prefix))? {
        let corrupt = |reason: String| RecordsError::Corrupt { key: hex::encode(&key), reason };
        let envelope = meshd_protocol::codec::decode_envelope(&bytes).map_err(|e| corrupt(e.to_string()))?;
        match VoteKey::from_bytes(&key).map(|k| k.step) {
            Some(Step::Propose) => records.push(Record::Proposal(envelope)),
            Some(_) => records.push(Record::Vote(envelope)),
            None => return Err(corrupt("not a vote key".into())),
        }
    }
    Ok(Stored { records })
}
