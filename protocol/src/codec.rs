//! The one place where meshd turns values into bytes and back.
//!
//! Encoding is bincode 2.0.1 with fixed-width little-endian integers (the
//! `standard()` configuration with `with_fixed_int_encoding()`): every value has
//! exactly one encoding, so a message id (a hash of bytes) names one message.
//! Lengths of byte strings and lists are `u64` little-endian prefixes; enums are
//! a `u32` variant index, except [`Kind`] which is a single byte.
//!
//! Decoding untrusted bytes:
//! - the input is refused before decoding when longer than the limit of its kind;
//! - the decoder runs with that limit, so a forged length prefix cannot make it
//!   allocate more than the limit (bincode claims bytes before allocating);
//! - trailing bytes after the value are an error;
//! - nothing panics: every failure is a [`CodecError`].

use bincode::config::{Configuration, Fixint, Limit, LittleEndian};
use bincode::{Decode, Encode};

use crate::envelope::{Envelope, VERSION};
use crate::hash::{Hash32, keccak256};
use crate::message::{
    AnchorSignature, BeaconReport, Certificate, EpochSummary, Kind, Message, MeterAttestation, MeterReading,
    Proposal, Vote, WitnessReport,
};

/// Most members a committee has (larger regions are sampled down to it).
/// Tendermint-style voting is all-to-all, O(n²) messages per round; 128
/// members keep a round under ~16k vote deliveries, and bound a certificate.
pub const MAX_COMMITTEE: usize = 128;

/// Bytes an envelope adds around its body: version (1), kind (1), body length
/// prefix (8), signer (32), signature (64).
pub const ENVELOPE_OVERHEAD: usize = 1 + 1 + 8 + 32 + 64;

/// Body limit of a beacon report. Its encoding is fixed at 91 bytes; the
/// slack leaves room for one added field without a new version.
pub const BEACON_REPORT_LIMIT: usize = 128;
/// Body limit of a witness report (fixed encoding of 65 bytes, plus slack).
pub const WITNESS_REPORT_LIMIT: usize = 128;
/// Body limit of a meter reading (fixed encoding of 76 bytes, plus slack).
pub const METER_READING_LIMIT: usize = 128;
/// Body limit of a meter attestation: a nested meter-reading envelope plus 24
/// bytes of its own, plus slack.
pub const METER_ATTESTATION_LIMIT: usize = 24 + ENVELOPE_OVERHEAD + METER_READING_LIMIT + 32;
/// Body limit of an epoch summary (fixed encoding of 204 bytes, plus slack).
pub const EPOCH_SUMMARY_LIMIT: usize = 256;
/// Body limit of a certificate: its 52-byte head (region, epoch, round,
/// summary), the 8-byte list length, [`MAX_COMMITTEE`] signatures of 96 bytes
/// each, and 8 bytes of slack.
pub const CERTIFICATE_LIMIT: usize = 52 + 8 + MAX_COMMITTEE * 96 + 8;

/// Most report ids one proposal lists. Chosen so that a proposal (a 221-byte
/// head: round, valid round, summary, list length) fits in [`CERTIFICATE_LIMIT`]
/// with slack, keeping [`MAX_ENVELOPE_LEN`] — what transports accept —
/// unchanged; a region's pool admits no more reports per epoch than this.
pub const MAX_PROPOSAL_REPORTS: usize = 360;
/// Body limit of a proposal: the 221-byte head plus [`MAX_PROPOSAL_REPORTS`]
/// ids of 32 bytes, plus slack; not above [`CERTIFICATE_LIMIT`].
pub const PROPOSAL_LIMIT: usize = 221 + MAX_PROPOSAL_REPORTS * 32 + 16;
/// Body limit of an anchor signature: its fixed encoding is 133 bytes (two
/// epochs, the root, the 20-byte signer, the 65-byte signature), plus slack.
pub const ANCHOR_SIGNATURE_LIMIT: usize = 160;
/// Body limit of a vote (fixed encoding of at most 122 bytes, plus slack).
pub const VOTE_LIMIT: usize = 160;

const _: () = assert!(PROPOSAL_LIMIT <= CERTIFICATE_LIMIT);

/// The largest envelope any kind allows: what a transport must accept.
pub const MAX_ENVELOPE_LEN: usize = ENVELOPE_OVERHEAD + CERTIFICATE_LIMIT;

/// Why bytes could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The input (or an encoded value) exceeds the limit of its kind.
    #[error("{what} is {len} bytes, over its limit of {limit}")]
    TooLarge {
        /// What was measured: a kind name or "envelope".
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The kind tag is not one this version knows.
    #[error("unknown message kind tag {0}")]
    UnknownKind(u8),
    /// The envelope's version is not [`VERSION`].
    #[error("unsupported envelope version {0} (this node speaks version {VERSION})")]
    UnsupportedVersion(u8),
    /// The bytes are not a valid encoding.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// The decoder's explanation.
        reason: String,
    },
    /// A valid value was followed by extra bytes.
    #[error("{what}: {extra} trailing bytes after the value")]
    TrailingBytes {
        /// What was being decoded.
        what: &'static str,
        /// How many bytes were left over.
        extra: usize,
    },
}

type Config<const N: usize> = Configuration<LittleEndian, Fixint, Limit<N>>;

const fn config<const N: usize>() -> Config<N> {
    bincode::config::standard().with_fixed_int_encoding().with_limit::<N>()
}

/// Encodes a value with limit `N`, refusing results over it.
fn encode_limited<T: Encode, const N: usize>(value: &T, what: &'static str) -> Result<Vec<u8>, CodecError> {
    let bytes = bincode::encode_to_vec(value, config::<N>())
        .map_err(|e| CodecError::Malformed { what, reason: e.to_string() })?;
    if bytes.len() > N {
        return Err(CodecError::TooLarge { what, len: bytes.len(), limit: N });
    }
    Ok(bytes)
}

/// Decodes exactly one value from `bytes`, never reading or allocating past `N`.
fn decode_limited<T: Decode<()>, const N: usize>(bytes: &[u8], what: &'static str) -> Result<T, CodecError> {
    if bytes.len() > N {
        return Err(CodecError::TooLarge { what, len: bytes.len(), limit: N });
    }
    let (value, read) = bincode::decode_from_slice::<T, _>(bytes, config::<N>())
        .map_err(|e| CodecError::Malformed { what, reason: e.to_string() })?;
    if read != bytes.len() {
        return Err(CodecError::TrailingBytes { what, extra: bytes.len() - read });
    }
    Ok(value)
}

/// The body limit of a kind.
pub fn body_limit(kind: Kind) -> usize {
    match kind {
        Kind::BeaconReport => BEACON_REPORT_LIMIT,
        Kind::WitnessReport => WITNESS_REPORT_LIMIT,
        Kind::MeterReading => METER_READING_LIMIT,
        Kind::MeterAttestation => METER_ATTESTATION_LIMIT,
        Kind::EpochSummary => EPOCH_SUMMARY_LIMIT,
        Kind::Certificate => CERTIFICATE_LIMIT,
        Kind::AnchorSignature => ANCHOR_SIGNATURE_LIMIT,
        Kind::Proposal => PROPOSAL_LIMIT,
        Kind::Vote => VOTE_LIMIT,
    }
}

/// The envelope limit of a kind: its body limit plus [`ENVELOPE_OVERHEAD`].
pub fn envelope_limit(kind: Kind) -> usize {
    body_limit(kind) + ENVELOPE_OVERHEAD
}

/// Encodes a message body.
pub fn encode_body(message: &Message) -> Result<Vec<u8>, CodecError> {
    let what = message.kind().name();
    match message {
        Message::BeaconReport(m) => encode_limited::<_, BEACON_REPORT_LIMIT>(m, what),
        Message::WitnessReport(m) => encode_limited::<_, WITNESS_REPORT_LIMIT>(m, what),
        Message::MeterReading(m) => encode_limited::<_, METER_READING_LIMIT>(m, what),
        Message::MeterAttestation(m) => encode_limited::<_, METER_ATTESTATION_LIMIT>(m, what),
        Message::EpochSummary(m) => encode_limited::<_, EPOCH_SUMMARY_LIMIT>(m, what),
        Message::Certificate(m) => {
            if m.signatures.len() > MAX_COMMITTEE {
                return Err(CodecError::TooLarge { what, len: m.signatures.len(), limit: MAX_COMMITTEE });
            }
            encode_limited::<_, CERTIFICATE_LIMIT>(m, what)
        }
        Message::AnchorSignature(m) => encode_limited::<_, ANCHOR_SIGNATURE_LIMIT>(m, what),
        Message::Proposal(m) => {
            if m.report_ids.len() > MAX_PROPOSAL_REPORTS {
                return Err(CodecError::TooLarge {
                    what,
                    len: m.report_ids.len(),
                    limit: MAX_PROPOSAL_REPORTS,
                });
            }
            encode_limited::<_, PROPOSAL_LIMIT>(m, what)
        }
        Message::Vote(m) => encode_limited::<_, VOTE_LIMIT>(m, what),
    }
}

/// Decodes a body of `kind` from untrusted bytes.
pub fn decode_body(kind: Kind, bytes: &[u8]) -> Result<Message, CodecError> {
    let what = kind.name();
    Ok(match kind {
        Kind::BeaconReport => {
            Message::BeaconReport(decode_limited::<BeaconReport, BEACON_REPORT_LIMIT>(bytes, what)?)
        }
        Kind::WitnessReport => {
            Message::WitnessReport(decode_limited::<WitnessReport, WITNESS_REPORT_LIMIT>(bytes, what)?)
        }
        Kind::MeterReading => {
            Message::MeterReading(decode_limited::<MeterReading, METER_READING_LIMIT>(bytes, what)?)
        }
        Kind::MeterAttestation => {
            let attestation = decode_limited::<MeterAttestation, METER_ATTESTATION_LIMIT>(bytes, what)?;
            check_envelope_head(&attestation.reading)?;
            if attestation.reading.kind != Kind::MeterReading {
                return Err(CodecError::Malformed {
                    what,
                    reason: format!(
                        "nested envelope is a {}, not a meter_reading",
                        attestation.reading.kind.name()
                    ),
                });
            }
            Message::MeterAttestation(attestation)
        }
        Kind::EpochSummary => {
            Message::EpochSummary(decode_limited::<EpochSummary, EPOCH_SUMMARY_LIMIT>(bytes, what)?)
        }
        Kind::Certificate => {
            let certificate = decode_limited::<Certificate, CERTIFICATE_LIMIT>(bytes, what)?;
            if certificate.signatures.len() > MAX_COMMITTEE {
                return Err(CodecError::TooLarge {
                    what,
                    len: certificate.signatures.len(),
                    limit: MAX_COMMITTEE,
                });
            }
            Message::Certificate(certificate)
        }
        Kind::AnchorSignature => {
            Message::AnchorSignature(decode_limited::<AnchorSignature, ANCHOR_SIGNATURE_LIMIT>(bytes, what)?)
        }
        Kind::Proposal => {
            let proposal = decode_limited::<Proposal, PROPOSAL_LIMIT>(bytes, what)?;
            if proposal.report_ids.len() > MAX_PROPOSAL_REPORTS {
                return Err(CodecError::TooLarge {
                    what,
                    len: proposal.report_ids.len(),
                    limit: MAX_PROPOSAL_REPORTS,
                });
            }
            Message::Proposal(proposal)
        }
        Kind::Vote => Message::Vote(decode_limited::<Vote, VOTE_LIMIT>(bytes, what)?),
    })
}

fn check_envelope_head(envelope: &Envelope) -> Result<(), CodecError> {
    if envelope.version != VERSION {
        return Err(CodecError::UnsupportedVersion(envelope.version));
    }
    let limit = body_limit(envelope.kind);
    if envelope.body.len() > limit {
        return Err(CodecError::TooLarge { what: envelope.kind.name(), len: envelope.body.len(), limit });
    }
    Ok(())
}

/// Encodes an envelope for the wire.
pub fn encode_envelope(envelope: &Envelope) -> Result<Vec<u8>, CodecError> {
    encode_limited::<_, MAX_ENVELOPE_LEN>(envelope, "envelope")
}

/// Decodes an envelope from untrusted bytes, applying the limit of its kind.
///
/// The body is not decoded (see [`Envelope::open`]) and the signature is not
/// checked (see [`crate::signature`]): a receiver first drops duplicates by id.
pub fn decode_envelope(bytes: &[u8]) -> Result<Envelope, CodecError> {
    // Fixed-width encoding puts the version at byte 0 and the kind at byte 1,
    // so the limit is known before decoding anything.
    let (&version, &tag) = match bytes {
        [version, tag, ..] => (version, tag),
        _ => {
            return Err(CodecError::Malformed { what: "envelope", reason: "shorter than its header".into() });
        }
    };
    if version != VERSION {
        return Err(CodecError::UnsupportedVersion(version));
    }
    let kind = Kind::from_tag(tag).ok_or(CodecError::UnknownKind(tag))?;
    let limit = envelope_limit(kind);
    if bytes.len() > limit {
        return Err(CodecError::TooLarge { what: "envelope", len: bytes.len(), limit });
    }
    let envelope = decode_limited::<Envelope, MAX_ENVELOPE_LEN>(bytes, "envelope")?;
    check_envelope_head(&envelope)?;
    Ok(envelope)
}

/// The hash that names an epoch summary: keccak256 of its body encoding.
pub fn summary_hash(summary: &EpochSummary) -> Result<Hash32, CodecError> {
    Ok(keccak256(encode_limited::<_, EPOCH_SUMMARY_LIMIT>(summary, "epoch_summary")?))
}

/// Encodes any value with the codec's configuration and the given limit, for
/// storage records that are not wire messages.
pub fn encode_record<T: Encode, const N: usize>(
    value: &T,
    what: &'static str,
) -> Result<Vec<u8>, CodecError> {
    encode_limited::<T, N>(value, what)
}

/// Decodes a storage record written by [`encode_record`] with the same limit.
pub fn decode_record<T: Decode<()>, const N: usize>(
    bytes: &[u8],
    what: &'static str,
) -> Result<T, CodecError> {
    decode_limited::<T, N>(bytes, what)
}
