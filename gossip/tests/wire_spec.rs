//! The byte layouts and the test vector that docs/protocol.md specifies: if
//! this test changes, the document changes with it.

use meshd_gossip::Topic;
use meshd_gossip::fetch::{self, Response, Status};
use meshd_protocol::envelope::Domain;
use meshd_protocol::geo::{Location, Region};
use meshd_protocol::keys::Keypair;
use meshd_protocol::message::{
    BeaconId, BeaconReport, Certificate, CommitSignature, DataRate, EpochSummary, Message, MeterReading,
    MeterStatus, WitnessReport,
};
use meshd_protocol::{Envelope, GatewayId, Hash32, MeterId, codec, keccak256};

/// The witness report of the test vector in docs/protocol.md.
fn vector_report() -> Message {
    Message::WitnessReport(WitnessReport {
        region: Region(0x0852_8308_3fff_ffff),
        epoch: 7,
        beacon_id: BeaconId([0xbb; 16]),
        location: Location(0x08c2_8308_3000_0fff),
        antenna_gain_ddbi: 30,
        rssi_ddbm: -1000,
        snr_ddb: 55,
        frequency_hz: 868_100_000,
        datarate: DataRate { spreading_factor: 7, bandwidth_khz: 125 },
        received_at_ms: 1_700_000_000_000,
        tmst_us: 123_456,
    })
}

const VECTOR_HEX: &str = concat!(
    "0102",
    "4100000000000000",
    "ffffff3f08835208",
    "0700000000000000",
    "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
    "ff0f00300883c208",
    "1e00",
    "18fc",
    "3700",
    "a027be33",
    "07",
    "7d00",
    "0068e5cf8b010000",
    "40e20100",
    "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c",
    "94111bfdb975e52777a5f9f5d16cef94ee07d0068c685f21a75a65d34779e029",
    "c88f9f0649924087fefa5325918db0a80a48e6695895e4109027a500cb3b0f03",
);

#[test]
fn envelope_test_vector_matches_the_specification() {
    let key = Keypair::from_secret([1; 32]);
    assert_eq!(key.gateway_id().to_string(), "12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5");
    let envelope = Envelope::seal(&Domain::new("test"), &key, &vector_report()).expect("seal");
    let bytes = codec::encode_envelope(&envelope).expect("encode");
    assert_eq!(hex::encode(&bytes), VECTOR_HEX);
    assert_eq!(bytes.len(), 106 + 65);
    // version (1) ‖ kind (1) ‖ body length (8) ‖ body (65) ‖ signer (32) ‖ signature (64)
    assert_eq!(&bytes[10 + 65..10 + 65 + 32], key.public_bytes().as_slice());
    let id = envelope.id().expect("id");
    assert_eq!(id.to_string(), "0xa615c017bd0ec99d0606ae9e575720b663e50552ebe81b0fa7808996b66f1765");
    assert_eq!(id, keccak256(&bytes));
    assert_eq!(meshd_gossip::behaviour::message_id(&bytes).0, id.0.to_vec(), "gossipsub id = envelope id");
}

#[test]
fn body_sizes_match_the_specification() {
    let len = |m: Message| codec::encode_body(&m).expect("encode").len();
    let datarate = DataRate { spreading_factor: 7, bandwidth_khz: 125 };
    assert_eq!(len(vector_report()), 65);
    assert_eq!(
        len(Message::BeaconReport(BeaconReport {
            region: Region(1),
            epoch: 2,
            location: Location(3),
            antenna_gain_ddbi: 4,
            tx_power_ddbm: 5,
            frequency_hz: 6,
            datarate,
            entropy: Hash32::ZERO,
            beacon_id: BeaconId([0; 16]),
            transmitted_at_ms: 7,
        })),
        91
    );
    let reading = MeterReading {
        meter: MeterId([1; 32]),
        sequence: 1,
        interval_start_s: 2,
        interval_end_s: 3,
        register_start_wh: 4,
        register_end_wh: 5,
        status: MeterStatus::Estimated,
    };
    let encoded = codec::encode_body(&Message::MeterReading(reading)).expect("encode");
    assert_eq!(encoded.len(), 76);
    assert_eq!(&encoded[72..], &[1, 0, 0, 0], "enum variant index as u32");
    let summary = EpochSummary {
        region: Region(1),
        epoch: 2,
        previous: Hash32::ZERO,
        reports_root: Hash32::ZERO,
        rewards_root: Hash32::ZERO,
        energy_root: Hash32::ZERO,
        beacon_count: 1,
        witness_count: 2,
        attestation_count: 3,
        reward_units: 4,
        energy_wh: 5,
        committee_hash: Hash32::ZERO,
    };
    assert_eq!(len(Message::EpochSummary(summary)), 204);
    let signature = CommitSignature { signer: GatewayId([1; 32]), signature: [2; 64] };
    let certificate = Certificate {
        region: Region(1),
        epoch: 2,
        round: 3,
        summary: Hash32::ZERO,
        signatures: vec![signature; 2],
    };
    assert_eq!(len(Message::Certificate(certificate)), 52 + 8 + 2 * 96);
}

#[test]
fn topic_and_protocol_names_match_the_specification() {
    assert_eq!(
        Topic::Region(Region(0x0852_8308_3fff_ffff)).name("main"),
        "/meshd/main/region/85283083fffffff/1"
    );
    assert_eq!(Topic::Global.name("main"), "/meshd/main/global/1");
    assert_eq!(fetch::protocol("main").as_ref(), "/meshd/main/fetch/1");
    assert_eq!(meshd_gossip::behaviour::kad_protocol("main").as_ref(), "/meshd/main/kad/1.0.0");
    assert_eq!(meshd_gossip::behaviour::identify_protocol("main"), "/meshd/main/1.0.0");
}

#[test]
fn fetch_frames_match_the_specification() {
    let request = fetch::encode_request(&[Hash32([0x11; 32])]);
    assert_eq!(hex::encode(&request[..8]), "0100000000000000");
    assert_eq!(request.len(), 8 + 32);
    let response =
        fetch::encode_response(&Response { status: Status::Ok, envelopes: vec![vec![0xaa, 0xbb]] }, 1 << 20);
    assert_eq!(hex::encode(response), concat!("00", "0100000000000000", "0200000000000000", "aabb"));
}
