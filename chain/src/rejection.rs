//! `EpochAnchor`'s custom errors as typed Rust values. The node reacts to
//! each differently (a landed range is done, a short quorum waits for more
//! signatures, an unknown signer means a stale committee view), so the revert
//! data is decoded instead of being shown as bytes.

use alloy::primitives::{Bytes, U256};
use meshd_protocol::keys::EvmAddress;

use crate::bindings::anchor::EpochAnchor::EpochAnchorErrors;
use crate::digest::EpochRange;

/// Why `EpochAnchor.anchor` refused a submission (its custom errors).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnchorRejection {
    /// The root is zero (the empty tree is never anchored).
    #[error("the root is zero (an empty tree is never anchored)")]
    EmptyRoot,
    /// `from > to`, or `to` is `u64::MAX`.
    #[error("invalid range: epochs {from}..={to}")]
    InvalidRange {
        /// The first epoch.
        from: u64,
        /// The last epoch.
        to: u64,
    },
    /// This exact range is already anchored (with some root).
    #[error("{range} are already anchored")]
    AlreadyAnchored {
        /// The range.
        range: EpochRange,
    },
    /// The range starts before the anchoring cursor: it overlaps anchored epochs.
    #[error("epochs from {from} overlap anchored ranges: the next anchorable epoch is {next_epoch}")]
    RangeOverlaps {
        /// The range's first epoch.
        from: u64,
        /// The contract's `nextEpoch()`.
        next_epoch: u64,
    },
    /// No committee is in force at the range's first epoch.
    #[error("no committee is in force at epoch {from}")]
    NoCommittee {
        /// The range's first epoch.
        from: u64,
    },
    /// Fewer signatures than the committee's quorum.
    #[error("{signatures} signatures, the committee's quorum is {quorum}")]
    QuorumNotReached {
        /// Signatures given.
        signatures: u64,
        /// Signatures needed.
        quorum: u64,
    },
    /// The signature bytes are not 65 per signer.
    #[error("{signers} signers but {signature_bytes} signature bytes (65 per signer)")]
    SignaturesLengthMismatch {
        /// Signers given.
        signers: u64,
        /// Bytes of signatures given.
        signature_bytes: u64,
    },
    /// Signers are not strictly ascending (a duplicate or an unsorted list).
    #[error("signer {signer} at index {index} is not above the previous one (duplicate or unsorted)")]
    SignersNotAscending {
        /// Its index.
        index: u64,
        /// The signer.
        signer: EvmAddress,
    },
    /// A signer is not a member of the committee in force.
    #[error("{signer} is not a member of committee {version}")]
    NotCommitteeMember {
        /// The signer.
        signer: EvmAddress,
        /// The committee's version.
        version: u32,
    },
    /// A signature does not recover to its signer (or is malleable).
    #[error("signature {index} is not {signer}'s signature of the anchor digest")]
    InvalidSignature {
        /// Its index.
        index: u64,
        /// The claimed signer.
        signer: EvmAddress,
    },
    /// Another revert (another custom error, or none): its raw data.
    #[error("anchor reverted with data {data}")]
    Other {
        /// The revert data.
        data: Bytes,
    },
}

fn small(value: U256) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

impl AnchorRejection {
    /// Decodes revert data returned by `anchor` (or by an `eth_estimateGas` of it).
    pub fn from_revert_data(data: &[u8]) -> AnchorRejection {
        use alloy::sol_types::SolInterface;
        match EpochAnchorErrors::abi_decode(data) {
            Ok(decoded) => AnchorRejection::from_decoded(decoded, data),
            Err(_) => AnchorRejection::Other { data: Bytes::copy_from_slice(data) },
        }
    }

    fn from_decoded(error: EpochAnchorErrors, data: &[u8]) -> AnchorRejection {
        match error {
            EpochAnchorErrors::EmptyRoot(_) => AnchorRejection::EmptyRoot,
            EpochAnchorErrors::InvalidRange(e) => {
                AnchorRejection::InvalidRange { from: e.fromEpoch, to: e.toEpoch }
            }
            EpochAnchorErrors::AlreadyAnchored(e) => {
                AnchorRejection::AlreadyAnchored { range: EpochRange { from: e.fromEpoch, to: e.toEpoch } }
            }
            EpochAnchorErrors::RangeOverlaps(e) => {
                AnchorRejection::RangeOverlaps { from: e.fromEpoch, next_epoch: e.nextEpoch }
            }
            EpochAnchorErrors::NoCommittee(e) => AnchorRejection::NoCommittee { from: e.fromEpoch },
            EpochAnchorErrors::QuorumNotReached(e) => {
                AnchorRejection::QuorumNotReached { signatures: small(e.signatures), quorum: small(e.quorum) }
            }
            EpochAnchorErrors::SignaturesLengthMismatch(e) => AnchorRejection::SignaturesLengthMismatch {
                signers: small(e.signers),
                signature_bytes: small(e.signatureBytes),
            },
            EpochAnchorErrors::SignersNotAscending(e) => AnchorRejection::SignersNotAscending {
                index: small(e.index),
                signer: EvmAddress(e.signer.into_array()),
            },
            EpochAnchorErrors::NotCommitteeMember(e) => AnchorRejection::NotCommitteeMember {
                signer: EvmAddress(e.signer.into_array()),
                version: e.version,
            },
            EpochAnchorErrors::InvalidSignature(e) => AnchorRejection::InvalidSignature {
                index: small(e.index),
                signer: EvmAddress(e.signer.into_array()),
            },
            _ => AnchorRejection::Other { data: Bytes::copy_from_slice(data) },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::anchor::EpochAnchor;
    use alloy::primitives::Address;
    use alloy::sol_types::SolError;

    #[test]
    fn quorum_error_decodes_into_its_typed_variant() {
        let data =
            EpochAnchor::QuorumNotReached { signatures: U256::from(2), quorum: U256::from(3) }.abi_encode();
        assert_eq!(
            AnchorRejection::from_revert_data(&data),
            AnchorRejection::QuorumNotReached { signatures: 2, quorum: 3 }
        );
    }

    #[test]
    fn duplicate_signer_error_names_the_signer() {
        let signer = Address::repeat_byte(0x11);
        let data = EpochAnchor::SignersNotAscending { index: U256::from(1), signer }.abi_encode();
        assert_eq!(
            AnchorRejection::from_revert_data(&data),
            AnchorRejection::SignersNotAscending { index: 1, signer: EvmAddress([0x11; 20]) }
        );
    }

    #[test]
    fn unknown_revert_data_is_kept_raw() {
        assert_eq!(
            AnchorRejection::from_revert_data(&[1, 2, 3]),
            AnchorRejection::Other { data: Bytes::from_static(&[1, 2, 3]) }
        );
    }
}
