//! The codec's promises, checked on generated inputs: every kind round-trips,
//! every encoding fits its kind's limit, and no byte string makes a decoder
//! panic or accept trailing garbage.

#[path = "common/strategies.rs"]
mod strategies;

use meshd_protocol::codec::{self, CodecError};
use meshd_protocol::envelope::{Domain, Envelope, VERSION};
use meshd_protocol::keys::Keypair;
use meshd_protocol::message::{Kind, Message};
use meshd_protocol::signature;
use proptest::prelude::*;
use proptest::strategy::ValueTree;

fn seal(message: &Message) -> Envelope {
    Envelope::seal(&Domain::new("test"), &Keypair::from_secret([3; 32]), message).expect("fits its limit")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_kind_round_trips_through_its_body_encoding(message in strategies::message()) {
        let bytes = codec::encode_body(&message)?;
        prop_assert!(bytes.len() <= codec::body_limit(message.kind()));
        prop_assert_eq!(codec::decode_body(message.kind(), &bytes)?, message);
    }

    #[test]
    fn every_kind_round_trips_through_a_signed_envelope(message in strategies::message()) {
        let envelope = seal(&message);
        let bytes = codec::encode_envelope(&envelope)?;
        prop_assert!(bytes.len() <= codec::envelope_limit(message.kind()));
        let decoded = codec::decode_envelope(&bytes)?;
        prop_assert_eq!(&decoded, &envelope);
        prop_assert_eq!(decoded.open()?, message);
        prop_assert!(signature::verify(&Domain::new("test"), &decoded).is_ok());
        prop_assert_eq!(decoded.id()?, envelope.id()?);
    }

    #[test]
    fn arbitrary_bytes_decode_to_a_value_or_an_error(
        head in proptest::option::of(1u8..=8),
        tail in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        // Half the inputs start with a valid version and a (mostly) known kind,
        // so the decoder gets past the header into the body.
        let mut bytes = head.map(|kind| vec![VERSION, kind]).unwrap_or_default();
        bytes.extend_from_slice(&tail);
        if let Ok(envelope) = codec::decode_envelope(&bytes) {
            // What decodes must re-encode to exactly the same bytes: one encoding per value.
            prop_assert_eq!(codec::encode_envelope(&envelope)?, bytes.clone());
            let _ = envelope.open();
        }
        for kind in Kind::ALL {
            if let Ok(message) = codec::decode_body(kind, &bytes) {
                prop_assert_eq!(codec::encode_body(&message)?, bytes.clone());
            }
        }
    }

    #[test]
    fn envelope_headers_with_any_tail_never_panic(
        kind in 0u8..10,
        len in any::<u64>(),
        tail in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        // A valid header followed by a forged body length: must be refused without allocating it.
        let mut bytes = vec![VERSION, kind];
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(&tail);
        let _ = codec::decode_envelope(&bytes);
    }

    #[test]
    fn mutated_envelopes_never_panic_and_never_verify_with_changed_content(
        message in strategies::message(),
        index in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let envelope = seal(&message);
        let mut bytes = codec::encode_envelope(&envelope)?;
        let i = index.index(bytes.len());
        bytes[i] ^= flip;
        if let Ok(decoded) = codec::decode_envelope(&bytes) {
            prop_assert_ne!(&decoded, &envelope);
            prop_assert!(signature::verify(&Domain::new("test"), &decoded).is_err());
        }
    }
}

#[test]
fn a_body_over_its_kind_limit_is_refused_before_decoding() {
    let bytes = vec![0u8; codec::BEACON_REPORT_LIMIT + 1];
    assert!(matches!(
        codec::decode_body(Kind::BeaconReport, &bytes),
        Err(CodecError::TooLarge { limit: codec::BEACON_REPORT_LIMIT, .. })
    ));
}

#[test]
fn an_envelope_over_its_kind_limit_is_refused_before_decoding() {
    let mut bytes = vec![VERSION, Kind::WitnessReport.tag()];
    bytes.resize(codec::envelope_limit(Kind::WitnessReport) + 1, 0);
    assert!(matches!(codec::decode_envelope(&bytes), Err(CodecError::TooLarge { .. })));
}

#[test]
fn a_forged_huge_body_length_is_refused_without_allocating() {
    let mut bytes = vec![VERSION, Kind::Certificate.tag()];
    bytes.extend_from_slice(&(u64::MAX / 2).to_le_bytes());
    bytes.extend_from_slice(&[0; 200]);
    assert!(matches!(codec::decode_envelope(&bytes), Err(CodecError::Malformed { .. })));
}

#[test]
fn unknown_kinds_and_versions_are_named() {
    assert_eq!(codec::decode_envelope(&[VERSION, 99, 0, 0]), Err(CodecError::UnknownKind(99)));
    assert_eq!(codec::decode_envelope(&[7, 1, 0, 0]), Err(CodecError::UnsupportedVersion(7)));
    assert!(matches!(codec::decode_envelope(&[VERSION]), Err(CodecError::Malformed { .. })));
}

#[test]
fn trailing_bytes_are_refused() {
    let message = Message::MeterReading(meshd_protocol::message::MeterReading {
        meter: Keypair::from_secret([1; 32]).meter_id(),
        sequence: 1,
        interval_start_s: 0,
        interval_end_s: 900,
        register_start_wh: 10,
        register_end_wh: 20,
        status: meshd_protocol::message::MeterStatus::Ok,
    });
    let mut bytes = codec::encode_envelope(&seal(&message)).expect("encode");
    bytes.push(0);
    assert_eq!(codec::decode_envelope(&bytes), Err(CodecError::TrailingBytes { what: "envelope", extra: 1 }));
}

#[test]
fn a_certificate_with_more_signatures_than_a_committee_cannot_be_encoded() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut certificate = strategies::certificate(0).new_tree(&mut runner).expect("tree").current();
    certificate.signatures = vec![
        meshd_protocol::message::CommitSignature {
            signer: meshd_protocol::GatewayId([1; 32]),
            signature: [2; 64]
        };
        codec::MAX_COMMITTEE + 1
    ];
    assert!(matches!(
        codec::encode_body(&Message::Certificate(certificate)),
        Err(CodecError::TooLarge { .. })
    ));
}

#[test]
fn a_signature_does_not_carry_over_to_another_kind_or_network() {
    let summary = Message::EpochSummary(meshd_protocol::message::EpochSummary {
        region: meshd_protocol::geo::Region(1),
        epoch: 2,
        previous: meshd_protocol::Hash32::ZERO,
        reports_root: meshd_protocol::Hash32([1; 32]),
        rewards_root: meshd_protocol::Hash32([2; 32]),
        energy_root: meshd_protocol::Hash32([3; 32]),
        beacon_count: 1,
        witness_count: 2,
        attestation_count: 3,
        reward_units: 4,
        energy_wh: 5,
        committee_hash: meshd_protocol::Hash32([4; 32]),
    });
    let envelope = seal(&summary);
    assert!(signature::verify(&Domain::new("test"), &envelope).is_ok());
    assert!(signature::verify(&Domain::new("mainnet"), &envelope).is_err());
    let relabelled = Envelope { kind: Kind::Certificate, ..envelope };
    assert!(signature::verify(&Domain::new("test"), &relabelled).is_err());
}

#[test]
fn fixed_size_bodies_encode_to_their_documented_sizes() {
    // The sizes stated in codec.rs and docs/protocol.md; the limits leave slack above them.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut sample = |strategy: proptest::strategy::BoxedStrategy<Message>| {
        let message = strategy.new_tree(&mut runner).expect("tree").current();
        codec::encode_body(&message).expect("encode").len()
    };
    assert_eq!(sample(strategies::beacon_report().prop_map(Message::BeaconReport).boxed()), 91);
    assert_eq!(sample(strategies::witness_report().prop_map(Message::WitnessReport).boxed()), 65);
    assert_eq!(sample(strategies::meter_reading().prop_map(Message::MeterReading).boxed()), 76);
    assert_eq!(sample(strategies::epoch_summary().prop_map(Message::EpochSummary).boxed()), 204);
    assert_eq!(sample(strategies::certificate(0).prop_map(Message::Certificate).boxed()), 52 + 8);
    assert_eq!(sample(strategies::anchor_signature().prop_map(Message::AnchorSignature).boxed()), 133);
}

#[test]
fn consensus_bodies_at_their_largest_fit_their_limits() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let summary = strategies::epoch_summary().new_tree(&mut runner).expect("tree").current();
    let proposal = Message::Proposal(meshd_protocol::message::Proposal {
        round: u32::MAX,
        valid_round: Some(u32::MAX),
        summary,
        report_ids: vec![meshd_protocol::Hash32([7; 32]); codec::MAX_PROPOSAL_REPORTS],
    });
    let len = codec::encode_body(&proposal).expect("encode").len();
    assert_eq!(len, 221 + codec::MAX_PROPOSAL_REPORTS * 32);
    assert!(len <= codec::PROPOSAL_LIMIT);
    let vote = Message::Vote(meshd_protocol::message::Vote {
        region: meshd_protocol::geo::Region(1),
        epoch: 2,
        round: 3,
        step: meshd_protocol::message::VoteStep::Precommit,
        value: Some(meshd_protocol::Hash32([1; 32])),
        commit_signature: Some([2; 64]),
    });
    assert_eq!(codec::encode_body(&vote).expect("encode").len(), 122);
}

#[test]
fn a_proposal_listing_more_reports_than_allowed_cannot_be_encoded() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let summary = strategies::epoch_summary().new_tree(&mut runner).expect("tree").current();
    let proposal = Message::Proposal(meshd_protocol::message::Proposal {
        round: 0,
        valid_round: None,
        summary,
        report_ids: vec![meshd_protocol::Hash32::ZERO; codec::MAX_PROPOSAL_REPORTS + 1],
    });
    assert!(matches!(codec::encode_body(&proposal), Err(CodecError::TooLarge { .. })));
}
