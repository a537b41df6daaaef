//! The bodies of the signed messages gateways exchange.
//!
//! Each body travels inside an [`Envelope`] whose
//! `kind` names it and whose signer is the author (the gateway, or the meter for
//! a [`MeterReading`]). Units are integers with the unit in the field name so
//! that every node computes the same results: `_ddbm` is tenths of a dBm,
//! `_ddb` tenths of a dB, `_ddbi` tenths of a dBi, `_ms` Unix milliseconds,
//! `_s` Unix seconds, `_wh` watt-hours.

use bincode::{Decode, Encode};

use crate::envelope::Envelope;
use crate::geo::{Location, Region};
use crate::hash::Hash32;
use crate::id::{GatewayId, MeterId};

/// Which message an envelope carries. The numbers are the wire tags.
///
/// Tags 16–31 are reserved for consensus messages (proposal, votes), 32 and up
/// for later kinds; an unknown tag is a decoding error, never a panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Kind {
    /// [`BeaconReport`]: a gateway transmitted a beacon.
    BeaconReport = 1,
    /// [`WitnessReport`]: a gateway heard a beacon.
    WitnessReport = 2,
    /// [`MeterReading`]: an energy meter's signed reading.
    MeterReading = 3,
    /// [`MeterAttestation`]: a gateway co-signs a meter reading it validated.
    MeterAttestation = 4,
    /// [`EpochSummary`]: a region's decided summary of one epoch.
    EpochSummary = 5,
    /// [`Certificate`]: 2f+1 committee signatures finalizing a summary.
    Certificate = 6,
    /// [`AnchorSignature`]: an anchor committee member's signature of an anchor digest.
    AnchorSignature = 7,
    /// [`Proposal`]: a round's proposer proposes a summary (consensus).
    Proposal = 16,
    /// [`Vote`]: a committee member's prevote or precommit (consensus).
    Vote = 17,
}

impl Kind {
    /// Every kind, in tag order.
    pub const ALL: [Kind; 9] = [
        Kind::BeaconReport,
        Kind::WitnessReport,
        Kind::MeterReading,
        Kind::MeterAttestation,
        Kind::EpochSummary,
        Kind::Certificate,
        Kind::AnchorSignature,
        Kind::Proposal,
        Kind::Vote,
    ];

    /// The wire tag.
    pub fn tag(self) -> u8 {
        self as u8
    }

    /// The kind of a wire tag, if it is one this version knows.
    pub fn from_tag(tag: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.tag() == tag)
    }

    /// A short lowercase name for logs and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            Kind::BeaconReport => "beacon_report",
            Kind::WitnessReport => "witness_report",
            Kind::MeterReading => "meter_reading",
            Kind::MeterAttestation => "meter_attestation",
            Kind::EpochSummary => "epoch_summary",
            Kind::Certificate => "certificate",
            Kind::AnchorSignature => "anchor_signature",
            Kind::Proposal => "proposal",
            Kind::Vote => "vote",
        }
    }
}

impl Encode for Kind {
    fn encode<E: bincode::enc::Encoder>(&self, encoder: &mut E) -> Result<(), bincode::error::EncodeError> {
        self.tag().encode(encoder)
    }
}

impl<C> Decode<C> for Kind {
    fn decode<D: bincode::de::Decoder<Context = C>>(
        decoder: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        let tag = u8::decode(decoder)?;
        Kind::from_tag(tag).ok_or(bincode::error::DecodeError::UnexpectedVariant {
            type_name: "Kind",
            allowed: &bincode::error::AllowedEnumVariants::Range { min: 1, max: 17 },
            found: u32::from(tag),
        })
    }
}
bincode::impl_borrow_decode!(Kind);

/// LoRa modulation: spreading factor and bandwidth.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub struct DataRate {
    /// Spreading factor, 5–12 (LoRa); other values are refused by the rules.
    pub spreading_factor: u8,
    /// Bandwidth in kHz: 125, 250 or 500.
    pub bandwidth_khz: u16,
}

/// The 16-byte payload of a beacon, derived from unpredictable entropy (see
/// [`crate::beacon`]); the id by which witnesses name the beacon they heard.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct BeaconId(pub [u8; 16]);

impl std::fmt::Debug for BeaconId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BeaconId({})", hex::encode(self.0))
    }
}

/// A gateway transmitted a beacon (signed by the beaconer).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct BeaconReport {
    /// The region whose topic and committee take this report.
    pub region: Region,
    /// Epoch of the transmission.
    pub epoch: u64,
    /// The beaconer's asserted location.
    pub location: Location,
    /// Antenna gain in tenths of a dBi.
    pub antenna_gain_ddbi: i16,
    /// Conducted transmit power in tenths of a dBm (before antenna gain).
    pub tx_power_ddbm: i16,
    /// Carrier frequency in Hz.
    pub frequency_hz: u32,
    /// Modulation of the beacon.
    pub datarate: DataRate,
    /// The entropy the payload was derived from (the region's previous finalized summary hash).
    pub entropy: Hash32,
    /// The beacon's payload and id.
    pub beacon_id: BeaconId,
    /// When the beacon left the antenna, Unix ms.
    pub transmitted_at_ms: u64,
}

/// A gateway heard a beacon (signed by the witness).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct WitnessReport {
    /// The region of the beacon's report (the witness's own may differ near borders).
    pub region: Region,
    /// Epoch of the beacon.
    pub epoch: u64,
    /// The beacon heard.
    pub beacon_id: BeaconId,
    /// The witness's asserted location.
    pub location: Location,
    /// The witness's antenna gain in tenths of a dBi.
    pub antenna_gain_ddbi: i16,
    /// Received signal strength in tenths of a dBm.
    pub rssi_ddbm: i16,
    /// Signal-to-noise ratio in tenths of a dB.
    pub snr_ddb: i16,
    /// Frequency the frame was received on, Hz.
    pub frequency_hz: u32,
    /// Modulation of the received frame.
    pub datarate: DataRate,
    /// When it was received, Unix ms (GPS time when the concentrator has it).
    pub received_at_ms: u64,
    /// The concentrator's internal microsecond counter at reception.
    pub tmst_us: u32,
}

/// Status flags a meter reports for an interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub enum MeterStatus {
    /// Measured normally.
    Ok,
    /// The meter estimated part of the interval (e.g. after a power loss).
    Estimated,
    /// The meter reports a fault; the reading earns nothing.
    Fault,
}

/// One interval of an energy meter, signed by the meter's own key.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct MeterReading {
    /// The meter (also the envelope's signer).
    pub meter: MeterId,
    /// Strictly increasing per meter.
    pub sequence: u64,
    /// Interval start, Unix s (inclusive).
    pub interval_start_s: u64,
    /// Interval end, Unix s (exclusive).
    pub interval_end_s: u64,
    /// Energy register at the interval start, Wh.
    pub register_start_wh: u64,
    /// Energy register at the interval end, Wh.
    pub register_end_wh: u64,
    /// The meter's status for the interval.
    pub status: MeterStatus,
}

/// A gateway co-signs a meter reading it validated (signed by the gateway).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct MeterAttestation {
    /// The region of the gateway.
    pub region: Region,
    /// The epoch the reading's interval end falls in.
    pub epoch: u64,
    /// The meter's own signed envelope of kind [`Kind::MeterReading`].
    pub reading: Envelope,
    /// When the gateway received the reading, Unix ms.
    pub received_at_ms: u64,
}

/// A region's summary of one epoch: the value its committee agrees on.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct EpochSummary {
    /// The region.
    pub region: Region,
    /// The epoch.
    pub epoch: u64,
    /// Hash of the region's previous finalized summary ([`Hash32::ZERO`] for the first).
    pub previous: Hash32,
    /// Merkle root of the accepted report ids in canonical order.
    pub reports_root: Hash32,
    /// Merkle root of (gateway, reward units) pairs.
    pub rewards_root: Hash32,
    /// Merkle root of (meter, Wh) pairs.
    pub energy_root: Hash32,
    /// Accepted beacon reports.
    pub beacon_count: u32,
    /// Accepted witness reports.
    pub witness_count: u32,
    /// Accepted meter attestations.
    pub attestation_count: u32,
    /// Sum of the reward units of the epoch.
    pub reward_units: u64,
    /// Sum of the attested energy of the epoch, Wh.
    pub energy_wh: u64,
    /// Hash of the committee that decided it (its sorted member ids).
    pub committee_hash: Hash32,
}

/// One committee member's signature in a [`Certificate`].
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct CommitSignature {
    /// The member.
    pub signer: GatewayId,
    /// ed25519 signature over [`Certificate::sign_bytes`].
    pub signature: [u8; 64],
}

/// 2f+1 committee signatures that finalize one summary.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Certificate {
    /// The region.
    pub region: Region,
    /// The epoch.
    pub epoch: u64,
    /// The consensus round in which it was decided.
    pub round: u32,
    /// Hash of the decided [`EpochSummary`] (see [`crate::codec::summary_hash`]).
    pub summary: Hash32,
    /// The members' signatures, sorted by signer, no signer twice.
    pub signatures: Vec<CommitSignature>,
}

impl Certificate {
    /// Domain tag of a commit signature: distinct from the envelope's, so a
    /// commit signature can never be replayed as an envelope signature.
    pub const DOMAIN_TAG: &'static [u8] = b"meshd.commit.v1";

    /// The bytes a member signs to commit to `summary` in `round`.
    pub fn sign_bytes(network: &str, region: Region, epoch: u64, round: u32, summary: &Hash32) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::DOMAIN_TAG.len() + network.len() + 53);
        out.extend_from_slice(Self::DOMAIN_TAG);
        out.push(network.len().min(255) as u8);
        out.extend_from_slice(&network.as_bytes()[..network.len().min(255)]);
        out.extend_from_slice(&region.0.to_le_bytes());
        out.extend_from_slice(&epoch.to_le_bytes());
        out.extend_from_slice(&round.to_le_bytes());
        out.extend_from_slice(&summary.0);
        out
    }
}

/// An anchor committee member's secp256k1 signature of the EIP-712 anchor
/// digest of one epoch range and root (see [`crate::anchor`]), published on
/// the global topic so that a quorum of them can be collected and submitted
/// to the `EpochAnchor` contract. The envelope is signed by the member's
/// gateway key; the anchor signature itself is what the contract checks.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct AnchorSignature {
    /// The first epoch of the anchored range.
    pub from_epoch: u64,
    /// The last epoch of the anchored range (inclusive).
    pub to_epoch: u64,
    /// The Merkle root over the range's summary leaves.
    pub root: Hash32,
    /// The member's anchor address (the secp256k1 key's EVM address).
    pub signer: [u8; 20],
    /// `r ‖ s ‖ v` over the anchor digest, `v` in {27, 28}, low `s`.
    pub signature: [u8; 65],
}

/// A consensus proposal: the round's proposer proposes a summary of one
/// (region, epoch) and lists the ids of the reports it counts, so that every
/// member can fetch what it misses, validate each report and recompute the
/// summary before it prevotes.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Proposal {
    /// The consensus round.
    pub round: u32,
    /// Tendermint's valid round: the round in which this value got 2f+1
    /// prevotes, if the proposer re-proposes a value it saw a quorum for.
    pub valid_round: Option<u32>,
    /// The proposed summary (its region and epoch name the consensus instance).
    pub summary: EpochSummary,
    /// Ids of the reports the summary counts, sorted, no duplicates.
    pub report_ids: Vec<Hash32>,
}

/// The two voting steps of a Tendermint round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub enum VoteStep {
    /// First vote of a round: the member holds and validated the proposal.
    Prevote,
    /// Second vote: the member saw 2f+1 prevotes for the value.
    Precommit,
}

/// A committee member's vote in one round of one (region, epoch).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Vote {
    /// The region.
    pub region: Region,
    /// The epoch.
    pub epoch: u64,
    /// The consensus round.
    pub round: u32,
    /// Prevote or precommit.
    pub step: VoteStep,
    /// Hash of the summary voted for ([`crate::codec::summary_hash`]), or
    /// `None` for a nil vote.
    pub value: Option<Hash32>,
    /// On a precommit for a value: the member's ed25519 signature over
    /// [`Certificate::sign_bytes`], ready to go into the certificate.
    pub commit_signature: Option<[u8; 64]>,
}

/// A decoded message body of any kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// See [`BeaconReport`].
    BeaconReport(BeaconReport),
    /// See [`WitnessReport`].
    WitnessReport(WitnessReport),
    /// See [`MeterReading`].
    MeterReading(MeterReading),
    /// See [`MeterAttestation`].
    MeterAttestation(MeterAttestation),
    /// See [`EpochSummary`].
    EpochSummary(EpochSummary),
    /// See [`Certificate`].
    Certificate(Certificate),
    /// See [`AnchorSignature`].
    AnchorSignature(AnchorSignature),
    /// See [`Proposal`].
    Proposal(Proposal),
    /// See [`Vote`].
    Vote(Vote),
}

impl Message {
    /// The kind tag of this body.
    pub fn kind(&self) -> Kind {
        match self {
            Message::BeaconReport(_) => Kind::BeaconReport,
            Message::WitnessReport(_) => Kind::WitnessReport,
            Message::MeterReading(_) => Kind::MeterReading,
            Message::MeterAttestation(_) => Kind::MeterAttestation,
            Message::EpochSummary(_) => Kind::EpochSummary,
            Message::Certificate(_) => Kind::Certificate,
            Message::AnchorSignature(_) => Kind::AnchorSignature,
            Message::Proposal(_) => Kind::Proposal,
            Message::Vote(_) => Kind::Vote,
        }
    }
}
