//! Realistic records for the storage tests: signed envelopes and a consistent
//! finalized summary.

#![allow(dead_code)] // Each test file uses a different part.

use meshd_protocol::codec;
use meshd_protocol::envelope::{Domain, Envelope};
use meshd_protocol::geo::{Location, Region};
use meshd_protocol::keys::Keypair;
use meshd_protocol::message::{
    BeaconId, BeaconReport, Certificate, CommitSignature, DataRate, EpochSummary, Message, WitnessReport,
};
use meshd_protocol::{GatewayId, Hash32};
use meshd_storage::FinalizedSummary;

/// A region of the tests.
pub const REGION: Region = Region(0x8528_3473_ffff_ffff);

/// The signing domain of the tests.
pub fn domain() -> Domain {
    Domain::new("meshd-storage-tests")
}

/// A witness report of `epoch` by gateway `n`, sealed: a ~170-byte envelope.
pub fn witness(epoch: u64, n: u32) -> Envelope {
    let key = Keypair::from_secret(secret(n));
    let report = WitnessReport {
        region: REGION,
        epoch,
        beacon_id: BeaconId([7; 16]),
        location: Location(0x8c28_3473_0000_0fff),
        antenna_gain_ddbi: 30,
        rssi_ddbm: -1105 + i16::try_from(n % 100).unwrap_or(0),
        snr_ddb: 55,
        frequency_hz: 868_100_000,
        datarate: DataRate { spreading_factor: 7, bandwidth_khz: 125 },
        received_at_ms: 1_750_000_000_000 + u64::from(n),
        tmst_us: n,
    };
    Envelope::seal(&domain(), &key, &Message::WitnessReport(report)).expect("a witness report encodes")
}

/// A beacon report of `epoch` for `beacon` by gateway `n`, sealed.
pub fn beacon(epoch: u64, beacon_id: BeaconId, n: u32) -> Envelope {
    let key = Keypair::from_secret(secret(n));
    let report = BeaconReport {
        region: REGION,
        epoch,
        location: Location(0x8c28_3473_0000_0fff),
        antenna_gain_ddbi: 30,
        tx_power_ddbm: 270,
        frequency_hz: 868_300_000,
        datarate: DataRate { spreading_factor: 9, bandwidth_khz: 125 },
        entropy: Hash32([n as u8; 32]),
        beacon_id,
        transmitted_at_ms: 1_750_000_000_000 + u64::from(n),
    };
    Envelope::seal(&domain(), &key, &Message::BeaconReport(report)).expect("a beacon report encodes")
}

/// A finalized summary of `region` and `epoch` whose certificate matches it.
pub fn finalized(region: Region, epoch: u64) -> FinalizedSummary {
    let summary = EpochSummary {
        region,
        epoch,
        previous: Hash32([1; 32]),
        reports_root: Hash32([2; 32]),
        rewards_root: Hash32([3; 32]),
        energy_root: Hash32([4; 32]),
        beacon_count: 3,
        witness_count: 17,
        attestation_count: 2,
        reward_units: 1_000,
        energy_wh: 12_345,
        committee_hash: Hash32([5; 32]),
    };
    let hash = codec::summary_hash(&summary).expect("a summary encodes");
    let signatures =
        (0..4).map(|n| CommitSignature { signer: GatewayId([n; 32]), signature: [n; 64] }).collect();
    let certificate = Certificate { region, epoch, round: 1, summary: hash, signatures };
    FinalizedSummary { summary, certificate }
}

fn secret(n: u32) -> [u8; 32] {
    let mut secret = [0x5a; 32];
    secret[..4].copy_from_slice(&n.to_le_bytes());
    secret
}
