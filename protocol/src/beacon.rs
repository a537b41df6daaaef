//! The beacon id: the 16-byte payload a beaconer transmits and witnesses report.
//!
//! ```text
//! beacon_id = keccak256("meshd.beacon.v1" ‖ entropy ‖ beaconer ‖ u64le(epoch))[..16]
//! ```
//!
//! - `entropy` is the hash of the region's previous finalized
//!   [`EpochSummary`](crate::message::EpochSummary). It exists only once the
//!   committee has decided the previous epoch and depends on every report that
//!   epoch accepted, so nobody — the beaconer included — can compute an epoch's
//!   beacon ids before that decision. A witness that reports a beacon id has
//!   therefore heard it (or been told it by someone who did) after the entropy
//!   existed, which is what the time window of the witness rules bounds.
//! - `beaconer` (its 32-byte ed25519 key) makes every gateway's payload
//!   different, so hearing one beacon says nothing about another's.
//! - `epoch` keeps a payload from being replayed in a later epoch that would
//!   happen to reuse the entropy (only possible with [`Hash32::ZERO`], below).
//! - The domain tag keeps these hashes apart from every other keccak256 meshd
//!   computes (message ids, Merkle leaves), and the `v1` lets a later derivation
//!   coexist.
//!
//! 16 bytes (128 bits) make a guess hopeless and still fit a LoRa frame at the
//! slowest data rates: the LoRaWAN Regional Parameters allow a 51-byte
//! application payload at DR0 (SF12/125 kHz) in EU868 and 11 bytes at DR0
//! (SF10/125 kHz) in US915, where the beacon must then go out at DR1 or above.
//!
//! The first epoch of a region has no previous summary: its entropy is
//! [`Hash32::ZERO`] and its beacon ids are predictable. Coverage in a region's
//! first epoch proves nothing and should not be rewarded.
//!
//! The beacon *schedule* (when in its epoch a gateway transmits) and the radio
//! frame around the payload are separate.

use crate::hash::{Hash32, keccak256_concat};
use crate::id::GatewayId;
use crate::message::{BeaconId, BeaconReport};

/// Domain tag that starts every beacon id derivation.
pub const DOMAIN_TAG: &[u8] = b"meshd.beacon.v1";

/// The beacon id of `beaconer` in `epoch`, from the region's `entropy` (its
/// previous finalized summary hash).
pub fn beacon_id(entropy: &Hash32, beaconer: &GatewayId, epoch: u64) -> BeaconId {
    let digest = keccak256_concat(&[DOMAIN_TAG, &entropy.0, &beaconer.0, &epoch.to_le_bytes()]);
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest.0[..16]);
    BeaconId(id)
}

/// Whether a beacon report's id is the one its entropy, beaconer and epoch
/// derive. Whether `report.entropy` is really the region's previous summary
/// hash is for the caller, who knows the region's chain of summaries.
pub fn is_derived(report: &BeaconReport, beaconer: &GatewayId) -> bool {
    report.beacon_id == beacon_id(&report.entropy, beaconer, report.epoch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::keccak256;

    fn entropy() -> Hash32 {
        keccak256(b"previous summary")
    }

    #[test]
    fn beacon_id_is_the_prefix_of_the_tagged_hash() {
        let gw = GatewayId([3; 32]);
        let mut bytes = DOMAIN_TAG.to_vec();
        bytes.extend_from_slice(&entropy().0);
        bytes.extend_from_slice(&gw.0);
        bytes.extend_from_slice(&9u64.to_le_bytes());
        assert_eq!(beacon_id(&entropy(), &gw, 9).0, keccak256(bytes).0[..16]);
    }

    #[test]
    fn every_input_changes_the_id() {
        let (gw, other) = (GatewayId([3; 32]), GatewayId([4; 32]));
        let id = beacon_id(&entropy(), &gw, 9);
        assert_ne!(id, beacon_id(&keccak256(b"another summary"), &gw, 9));
        assert_ne!(id, beacon_id(&entropy(), &other, 9));
        assert_ne!(id, beacon_id(&entropy(), &gw, 10));
        assert_eq!(id, beacon_id(&entropy(), &gw, 9));
    }
}
