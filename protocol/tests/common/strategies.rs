//! proptest strategies for every wire type, shared by the protocol's tests.
#![allow(dead_code)]

use meshd_protocol::envelope::{Domain, Envelope};
use meshd_protocol::geo::{Location, Region};
use meshd_protocol::hash::Hash32;
use meshd_protocol::id::{GatewayId, MeterId};
use meshd_protocol::keys::Keypair;
use meshd_protocol::message::{
    AnchorSignature, BeaconId, BeaconReport, Certificate, CommitSignature, DataRate, EpochSummary, Message,
    MeterAttestation, MeterReading, MeterStatus, Proposal, Vote, VoteStep, WitnessReport,
};
use proptest::prelude::*;

pub fn hash() -> impl Strategy<Value = Hash32> {
    any::<[u8; 32]>().prop_map(Hash32)
}

pub fn gateway() -> impl Strategy<Value = GatewayId> {
    any::<[u8; 32]>().prop_map(GatewayId)
}

pub fn meter() -> impl Strategy<Value = MeterId> {
    any::<[u8; 32]>().prop_map(MeterId)
}

pub fn datarate() -> impl Strategy<Value = DataRate> {
    (any::<u8>(), any::<u16>())
        .prop_map(|(spreading_factor, bandwidth_khz)| DataRate { spreading_factor, bandwidth_khz })
}

pub fn beacon_report() -> impl Strategy<Value = BeaconReport> {
    (
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<i16>(), any::<i16>()),
        (any::<u32>(), datarate(), hash(), any::<[u8; 16]>(), any::<u64>()),
    )
        .prop_map(|((region, epoch, location, gain, power), (freq, datarate, entropy, beacon, at))| {
            BeaconReport {
                region: Region(region),
                epoch,
                location: Location(location),
                antenna_gain_ddbi: gain,
                tx_power_ddbm: power,
                frequency_hz: freq,
                datarate,
                entropy,
                beacon_id: BeaconId(beacon),
                transmitted_at_ms: at,
            }
        })
}

pub fn witness_report() -> impl Strategy<Value = WitnessReport> {
    (
        (any::<u64>(), any::<u64>(), any::<[u8; 16]>(), any::<u64>(), any::<i16>(), any::<i16>()),
        (any::<i16>(), any::<u32>(), datarate(), any::<u64>(), any::<u32>()),
    )
        .prop_map(|((region, epoch, beacon, location, gain, rssi), (snr, freq, datarate, at, tmst))| {
            WitnessReport {
                region: Region(region),
                epoch,
                beacon_id: BeaconId(beacon),
                location: Location(location),
                antenna_gain_ddbi: gain,
                rssi_ddbm: rssi,
                snr_ddb: snr,
                frequency_hz: freq,
                datarate,
                received_at_ms: at,
                tmst_us: tmst,
            }
        })
}

pub fn status() -> impl Strategy<Value = MeterStatus> {
    prop_oneof![Just(MeterStatus::Ok), Just(MeterStatus::Estimated), Just(MeterStatus::Fault)]
}

pub fn meter_reading() -> impl Strategy<Value = MeterReading> {
    (meter(), any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>(), status()).prop_map(
        |(meter, sequence, start, end, reg_start, reg_end, status)| MeterReading {
            meter,
            sequence,
            interval_start_s: start,
            interval_end_s: end,
            register_start_wh: reg_start,
            register_end_wh: reg_end,
            status,
        },
    )
}

/// A meter-signed reading envelope (real signature by a key from `seed`).
pub fn reading_envelope() -> impl Strategy<Value = Envelope> {
    (any::<[u8; 32]>(), meter_reading()).prop_map(|(seed, mut reading)| {
        let key = Keypair::from_secret(seed);
        reading.meter = key.meter_id();
        Envelope::seal(&Domain::new("test"), &key, &Message::MeterReading(reading))
            .expect("reading fits its limit")
    })
}

pub fn meter_attestation() -> impl Strategy<Value = MeterAttestation> {
    (any::<u64>(), any::<u64>(), reading_envelope(), any::<u64>()).prop_map(|(region, epoch, reading, at)| {
        MeterAttestation { region: Region(region), epoch, reading, received_at_ms: at }
    })
}

pub fn epoch_summary() -> impl Strategy<Value = EpochSummary> {
    (
        (any::<u64>(), any::<u64>(), hash(), hash(), hash(), hash()),
        (any::<u32>(), any::<u32>(), any::<u32>(), any::<u64>(), any::<u64>(), hash()),
    )
        .prop_map(
            |((region, epoch, previous, reports, rewards, energy), (b, w, a, units, wh, committee))| {
                EpochSummary {
                    region: Region(region),
                    epoch,
                    previous,
                    reports_root: reports,
                    rewards_root: rewards,
                    energy_root: energy,
                    beacon_count: b,
                    witness_count: w,
                    attestation_count: a,
                    reward_units: units,
                    energy_wh: wh,
                    committee_hash: committee,
                }
            },
        )
}

pub fn certificate(max_signatures: usize) -> impl Strategy<Value = Certificate> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
        hash(),
        proptest::collection::vec((gateway(), any::<[u8; 32]>(), any::<[u8; 32]>()), 0..=max_signatures),
    )
        .prop_map(|(region, epoch, round, summary, sigs)| Certificate {
            region: Region(region),
            epoch,
            round,
            summary,
            signatures: sigs
                .into_iter()
                .map(|(signer, a, b)| {
                    let mut signature = [0u8; 64];
                    signature[..32].copy_from_slice(&a);
                    signature[32..].copy_from_slice(&b);
                    CommitSignature { signer, signature }
                })
                .collect(),
        })
}

pub fn proposal(max_reports: usize) -> impl Strategy<Value = Proposal> {
    (
        any::<u32>(),
        proptest::option::of(any::<u32>()),
        epoch_summary(),
        proptest::collection::vec(hash(), 0..=max_reports),
    )
        .prop_map(|(round, valid_round, summary, report_ids)| Proposal {
            round,
            valid_round,
            summary,
            report_ids,
        })
}

pub fn vote() -> impl Strategy<Value = Vote> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
        prop_oneof![Just(VoteStep::Prevote), Just(VoteStep::Precommit)],
        proptest::option::of(hash()),
        proptest::option::of((any::<[u8; 32]>(), any::<[u8; 32]>())),
    )
        .prop_map(|(region, epoch, round, step, value, sig)| Vote {
            region: Region(region),
            epoch,
            round,
            step,
            value,
            commit_signature: sig.map(|(a, b)| {
                let mut signature = [0u8; 64];
                signature[..32].copy_from_slice(&a);
                signature[32..].copy_from_slice(&b);
                signature
            }),
        })
}

/// Any message of any kind, certificates up to the committee limit.
pub fn anchor_signature() -> impl Strategy<Value = AnchorSignature> {
    (any::<u64>(), any::<u64>(), hash(), any::<[u8; 20]>(), any::<[u8; 32]>(), any::<[u8; 32]>(), any::<u8>())
        .prop_map(|(from_epoch, to_epoch, root, signer, r, s, v)| {
            let mut signature = [0u8; 65];
            signature[..32].copy_from_slice(&r);
            signature[32..64].copy_from_slice(&s);
            signature[64] = v;
            AnchorSignature { from_epoch, to_epoch, root, signer, signature }
        })
}

pub fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        beacon_report().prop_map(Message::BeaconReport),
        witness_report().prop_map(Message::WitnessReport),
        meter_reading().prop_map(Message::MeterReading),
        meter_attestation().prop_map(Message::MeterAttestation),
        epoch_summary().prop_map(Message::EpochSummary),
        certificate(meshd_protocol::codec::MAX_COMMITTEE).prop_map(Message::Certificate),
        proposal(meshd_protocol::codec::MAX_PROPOSAL_REPORTS).prop_map(Message::Proposal),
        vote().prop_map(Message::Vote),
        anchor_signature().prop_map(Message::AnchorSignature),
    ]
}
