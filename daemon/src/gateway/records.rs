//! The node's durable records in the sled store, and back.
//!
//! | node record | tree | key |
//! |---|---|---|
//! | `Record::Proposal` | votes | `region ‖ epoch ‖ round ‖ 0` |
//! | `Record::Vote` | votes | `region ‖ epoch ‖ round ‖ step` (1 prevote, 2 precommit) |
//! | `Record::Finalized` | summaries | `region ‖ epoch` |
//! | `Record::Report` (own reports) | reports | `region ‖ epoch ‖ report id` |
//! | `Record::Settled` | settlements | `region ‖ epoch` (with its summary only) |
//! | `Record::Meter` | meters | `meter id` |
//! | `Record::Registry` | meta | `"registry" ‖ region ‖ first epoch` → member ids, 32 bytes each |
//!
//! Proposals share the votes tree: a leader signs at most one proposal per
//! round, and the store's one-value-per-key rule guards it like a vote.
//! A meter's stored `carried_wh` is 0: the node does not issue certificates
//! (they follow from finalized summaries), so it carries nothing.

use meshd_node::{Record, Stored};
use meshd_protocol::envelope::Envelope;
use meshd_protocol::geo::Region;
use meshd_protocol::message::{Message, VoteStep};
use meshd_protocol::rules::meter;
use meshd_protocol::{GatewayId, MeterId};
use meshd_storage::key::{Step, VoteKey};
use meshd_storage::record::{FinalizedSummary, MeterState, Settlement};
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

/// The region and epoch an own report is stored under.
fn report_place(envelope: &Envelope) -> Result<(Region, u64), RecordsError> {
    match envelope.open() {
        Ok(Message::BeaconReport(b)) => Ok((b.region, b.epoch)),
        Ok(Message::WitnessReport(w)) => Ok((w.region, w.epoch)),
        Ok(Message::MeterAttestation(a)) => Ok((a.region, a.epoch)),
        _ => Err(RecordsError::Mismatch { what: "report" }),
    }
}

/// Prefix of the registry changes of `region` in the meta tree.
fn registry_prefix(region: Region) -> Vec<u8> {
    [&b"registry"[..], &region.0.to_be_bytes()].concat()
}

/// The batch that makes `records` of `region`'s node durable, in one atomic write.
pub fn batch(records: &[Record], region: Region) -> Result<Batch, RecordsError> {
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
            Record::Report(envelope) => {
                let (region, epoch) = report_place(envelope)?;
                batch.put_report(region, epoch, envelope)?;
            }
            Record::Settled { epoch, report_ids, rewards, energy } => {
                let settlement = Settlement {
                    region,
                    epoch: *epoch,
                    report_ids: report_ids.clone(),
                    rewards: rewards.clone(),
                    energy: energy.clone(),
                };
                // Stored only beside its summary and only when its lists
                // rebuild the summary's roots: a proof from it then holds.
                let summary = records.iter().find_map(|r| match r {
                    Record::Finalized { summary, .. } if summary.epoch == *epoch => Some(summary),
                    _ => None,
                });
                match summary.map(|summary| settlement.check_against(summary)) {
                    Some(Ok(())) => {
                        batch.put_settlement(&settlement)?;
                    }
                    Some(Err(reason)) => tracing::warn!(epoch, %reason, "settlement not stored"),
                    None => tracing::warn!(epoch, "settlement without its summary not stored"),
                }
            }
            Record::Meter { meter, state } => {
                batch.put_meter_state(
                    meter,
                    &MeterState {
                        last_sequence: state.sequence,
                        last_interval_end_s: state.interval_end_s,
                        last_register_wh: state.register_end_wh,
                        carried_wh: 0,
                    },
                )?;
            }
            Record::Registry { from_epoch, members } => {
                let key = [registry_prefix(region), from_epoch.to_be_bytes().to_vec()].concat();
                let value: Vec<u8> = members.iter().flat_map(|m| m.0).collect();
                batch.put(Tree::Meta, key, value);
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
    // Own reports of the epochs after the last finalized one (older ones are
    // settled and not restored).
    let from_epoch = records
        .iter()
        .filter_map(|r| match r {
            Record::Finalized { summary, .. } => Some(summary.epoch + 1),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let start = meshd_storage::key::region_epoch(region, from_epoch).to_vec();
    let end = meshd_storage::key::region_epoch(Region(region.0.wrapping_add(1)), 0).to_vec();
    let range = if region.0 == u64::MAX {
        Scan::range(std::ops::Bound::Included(start), std::ops::Bound::Unbounded)
    } else {
        Scan::range(std::ops::Bound::Included(start), std::ops::Bound::Excluded(end))
    };
    for (key, bytes) in store.scan(Tree::Reports, &range)? {
        let envelope = meshd_protocol::codec::decode_envelope(&bytes)
            .map_err(|e| RecordsError::Corrupt { key: hex::encode(&key), reason: e.to_string() })?;
        records.push(Record::Report(envelope));
    }
    for (key, _) in store.scan(Tree::Meters, &Scan::all())? {
        let corrupt = |reason: String| RecordsError::Corrupt { key: hex::encode(&key), reason };
        let id = <[u8; 32]>::try_from(key.as_slice()).map_err(|_| corrupt("not a meter id".into()))?;
        let meter = MeterId(id);
        if let Some(state) = store.meter_state(&meter)? {
            let state = meter::MeterState {
                sequence: state.last_sequence,
                register_end_wh: state.last_register_wh,
                interval_end_s: state.last_interval_end_s,
            };
            records.push(Record::Meter { meter, state });
        }
    }
    let registry = registry_prefix(region);
    for (key, bytes) in store.scan(Tree::Meta, &Scan::prefix(&registry))? {
        let corrupt = |reason: String| RecordsError::Corrupt { key: hex::encode(&key), reason };
        let from_epoch = key
            .get(registry.len()..)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| corrupt("not a registry key".into()))?;
        if bytes.len() % 32 != 0 {
            return Err(corrupt("members are not 32-byte ids".into()));
        }
        let members =
            bytes.chunks_exact(32).filter_map(|c| <[u8; 32]>::try_from(c).ok()).map(GatewayId).collect();
        records.push(Record::Registry { from_epoch, members });
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

#[cfg(test)]
mod tests {
    use super::*;
    use meshd_protocol::envelope::Domain;
    use meshd_protocol::geo::Location;
    use meshd_protocol::keys::Keypair;
    use meshd_protocol::message::{BeaconId, DataRate, WitnessReport};
    use meshd_storage::MemoryStore;

    #[test]
    fn own_reports_meter_states_and_registry_changes_come_back_on_load() {
        let region = Region(0x85_1f_b4_67_ff_ff_ff_ff);
        let key = Keypair::from_secret([1; 32]);
        let report = WitnessReport {
            region,
            epoch: 3,
            beacon_id: BeaconId([2; 16]),
            location: Location(0),
            antenna_gain_ddbi: 30,
            rssi_ddbm: -1_100,
            snr_ddb: 0,
            frequency_hz: 868_100_000,
            datarate: DataRate { spreading_factor: 7, bandwidth_khz: 125 },
            received_at_ms: 1,
            tmst_us: 0,
        };
        let envelope =
            Envelope::seal(&Domain::new("test"), &key, &Message::WitnessReport(report)).expect("seal");
        let state = meter::MeterState { sequence: 4, register_end_wh: 1_000, interval_end_s: 60 };
        let meter = Keypair::from_secret([3; 32]).meter_id();
        let members = vec![key.gateway_id(), Keypair::from_secret([4; 32]).gateway_id()];
        let written = vec![
            Record::Report(envelope),
            Record::Meter { meter, state },
            Record::Registry { from_epoch: 0, members: members.clone() },
            Record::Registry { from_epoch: 5, members: members[..1].to_vec() },
        ];
        let store = MemoryStore::new();
        store.apply(&batch(&written, region).expect("batch")).expect("apply");
        let loaded = load(&store, region).expect("load").records;
        for record in &written {
            assert!(loaded.contains(record), "{record:?} not loaded");
        }
        // Another region's node sees none of this region's reports or registry.
        let other = load(&store, Region(region.0 + 1)).expect("load").records;
        assert!(!other.iter().any(|r| matches!(r, Record::Report(_) | Record::Registry { .. })));
    }
}
