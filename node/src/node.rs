//! The gateway's state machine: inputs in, outputs out, no IO.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use meshd_protocol::codec;
use meshd_protocol::envelope::{Domain, Envelope};
use meshd_protocol::epoch::EpochClock;
use meshd_protocol::geo::{Location, Region};
use meshd_protocol::keys::Keypair;
use meshd_protocol::message::{
    BeaconId, BeaconReport, Certificate, CommitSignature, DataRate, EpochSummary, Message, MeterAttestation,
    Proposal, Vote, VoteStep, WitnessReport,
};
use meshd_protocol::reward::RewardParams;
use meshd_protocol::rules::meter::{self, MeterState};
use meshd_protocol::rules::witness;
use meshd_protocol::signature;
use meshd_protocol::{GatewayId, Hash32, MeterId, beacon};

use crate::committee::{Committee, anchor_root, beacon_time_ms};
use crate::consensus::{Action, Instance, Step, TimeoutStep};
use crate::pool::{self, Context, Limits, Pool, Reason, Report};
use meshd_protocol::anchor::{AnchorDomain, EpochRange};
use meshd_protocol::merkle::summary_leaf;

/// Consensus timeouts, in ms. Round `r` waits `base + r · delta`, so that
/// after the network settles some round is long enough for a quorum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Wait for a proposal. Default 3,000 ms: fetching missing reports from the
    /// proposer is two message delays plus validation, well under a second on
    /// a WAN, with margin for a Raspberry Pi under load.
    pub propose_ms: u64,
    /// Wait after 2f+1 prevotes of any kind. Default 1,000 ms (one gossip round trip and slack).
    pub prevote_ms: u64,
    /// Wait after 2f+1 precommits of any kind. Default 1,000 ms, as prevote.
    pub precommit_ms: u64,
    /// Added per round. Default 500 ms: ten rounds double the first's timeouts.
    pub delta_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { propose_ms: 3_000, prevote_ms: 1_000, precommit_ms: 1_000, delta_ms: 500 }
    }
}

/// What this gateway transmits as a beacon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Radio {
    /// The gateway's asserted location.
    pub location: Location,
    /// Antenna gain, tenths of a dBi.
    pub antenna_gain_ddbi: i16,
    /// Conducted transmit power, tenths of a dBm.
    pub tx_power_ddbm: i16,
    /// Beacon frequency, Hz.
    pub frequency_hz: u32,
    /// Beacon modulation.
    pub datarate: DataRate,
}

/// The node's configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Network name: the signing domain.
    pub network: String,
    /// The committee region (see [`crate::committee::committee_region`]).
    pub region: Region,
    /// The epoch schedule.
    pub clock: EpochClock,
    /// The region's first epoch: its `previous` is [`Hash32::ZERO`].
    pub first_epoch: u64,
    /// Consensus timeouts.
    pub timeouts: Timeouts,
    /// Spam limits of the report pool.
    pub limits: Limits,
    /// Witness rules.
    pub witness: witness::Params,
    /// Reward formula.
    pub rewards: RewardParams,
    /// This gateway's radio.
    pub radio: Radio,
    /// Anchor every this many epochs (`A`); 0 disables anchoring.
    pub anchor_every: u64,
    /// The anchor contract.
    pub anchor_domain: AnchorDomain,
    /// Meter rules (network-wide; [`meter::Params::default`] unless the
    /// network says otherwise).
    pub meter: meter::Params,
    /// Rounds after which a deciding epoch is reported stalled. Default 4:
    /// with honest leaders rotating, f+1 consecutive bad rounds are unlikely
    /// past four unless the committee lacks a quorum.
    pub stall_rounds: u32,
}

/// A gossip topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    /// The region's topic: reports, proposals, votes.
    Region(Region),
    /// The global topic: finalized summaries and certificates.
    Global,
}

/// A request to another gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Report envelopes by id.
    Reports {
        /// The epoch they belong to: where the answering node looks first;
        /// it searches every epoch it holds.
        epoch: u64,
        /// The ids.
        ids: Vec<Hash32>,
    },
    /// The finalized summary and certificate of an epoch.
    Decision {
        /// The epoch.
        epoch: u64,
    },
}

/// An answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// The encoded envelopes held of those asked for.
    Reports(Vec<Vec<u8>>),
    /// A finalized summary with its certificate.
    Decision {
        /// The summary.
        summary: Box<EpochSummary>,
        /// Its certificate.
        certificate: Box<Certificate>,
    },
    /// The responder does not have it.
    NotFound,
}

/// Why a fetch failed (transport side).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// No answer in time.
    #[error("the peer did not answer in time")]
    Timeout,
    /// The peer could not be reached.
    #[error("the peer is unreachable")]
    Unreachable,
}

/// A LoRa frame this gateway heard that carried a beacon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heard {
    /// The beacon id (the frame's payload).
    pub beacon_id: BeaconId,
    /// RSSI, tenths of a dBm.
    pub rssi_ddbm: i16,
    /// SNR, tenths of a dB.
    pub snr_ddb: i16,
    /// Frequency, Hz.
    pub frequency_hz: u32,
    /// Modulation.
    pub datarate: DataRate,
    /// Concentrator counter, µs.
    pub tmst_us: u32,
}

/// An input to [`Node::handle_input`]. Every input carries the current time.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// Time passed (the deadline of [`Output::Timeout`] or any later moment).
    Timeout {
        /// Now, Unix ms.
        now_ms: u64,
    },
    /// A gossip message arrived.
    Gossip {
        /// Now, Unix ms.
        now_ms: u64,
        /// The gateway that forwarded it.
        from: GatewayId,
        /// The encoded envelope.
        bytes: Vec<u8>,
    },
    /// A peer asks for something; answer with [`Output::Respond`] of the same id.
    FetchRequest {
        /// Now, Unix ms.
        now_ms: u64,
        /// The transport's id of the request.
        id: u64,
        /// The asking peer.
        from: GatewayId,
        /// What it asks.
        request: Request,
    },
    /// The answer to an [`Output::Fetch`] of the same id.
    FetchResponse {
        /// Now, Unix ms.
        now_ms: u64,
        /// The fetch's id.
        id: u64,
        /// The answer.
        result: Result<Response, FetchError>,
    },
    /// The batch of [`Output::Persist`] with this id is durable.
    Persisted {
        /// Now, Unix ms.
        now_ms: u64,
        /// The persist's id.
        id: u64,
    },
    /// The concentrator heard a beacon.
    BeaconHeard {
        /// Now, Unix ms (the reception time).
        now_ms: u64,
        /// The frame.
        heard: Heard,
    },
    /// An energy meter's signed reading arrived (from this gateway's meter
    /// ingest). Answered by [`Output::MeterVerdict`] of the same id: at once
    /// when refused, after the attestation and the meter's new state are
    /// durable when accepted.
    MeterReading {
        /// Now, Unix ms (the reception time).
        now_ms: u64,
        /// The ingest's id of this reading; it comes back in the verdict.
        id: u64,
        /// The meter-signed envelope of kind `MeterReading`.
        reading: Envelope,
        /// The meter's rated capacity, W (from the gateway's meter config).
        capacity_w: u64,
    },
    /// The chain's registry of gateways, as of chain time `as_of_ms`. The
    /// committee (and the signers whose reports count) of epoch `e` is the
    /// registry as of `e`'s start, so a registry as of a moment in epoch `c`
    /// applies from `c + 1`. Because the epoch comes from chain time, members
    /// that read the same block agree even when they read it at different
    /// moments; one that learns late still applies it to `c + 1` unless that
    /// epoch is already being decided (then from the first epoch that is not).
    /// A registry older than one already applied is ignored.
    Registry {
        /// Now, Unix ms.
        now_ms: u64,
        /// Chain time of the block the registry was read at (its timestamp),
        /// Unix ms. A daemon that knows no better passes `now_ms`.
        as_of_ms: u64,
        /// Registered gateways of the committee region.
        members: Vec<GatewayId>,
    },
}

/// A durable record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A vote this member signed (its envelope); restored on start.
    Vote(Envelope),
    /// A proposal this member signed; restored on start so that it never
    /// proposes a second value in the same round.
    Proposal(Envelope),
    /// A finalized summary with its certificate.
    Finalized {
        /// The summary.
        summary: EpochSummary,
        /// Its certificate.
        certificate: Certificate,
    },
    /// What a decided summary settled, persisted with [`Record::Finalized`]
    /// when this member judged the decided proposal (it holds the reports):
    /// the lists under the summary's three roots, for proofs. Never read
    /// back by the node.
    Settled {
        /// The epoch.
        epoch: u64,
        /// The accepted reports' ids, ascending (`reports_root`'s leaves).
        report_ids: Vec<Hash32>,
        /// Rewarded gateways and their units, by id (`rewards_root`'s leaves).
        rewards: Vec<(GatewayId, u64)>,
        /// Credited meters and their Wh, by id (`energy_root`'s leaves).
        energy: Vec<(MeterId, u64)>,
    },
    /// A report this gateway signed (beacon, witness or meter attestation),
    /// stored before it is published or its beacon transmitted. On start it
    /// is offered to the epoch's pool again and republished while its epoch
    /// still takes reports; a stored beacon report means the epoch's beacon
    /// is not sent again. A store may drop it once its epoch is finalized.
    Report(Envelope),
    /// A registry change and the first epoch it applies to; restored on start
    /// so the epochs still undecided keep the committees they had.
    Registry {
        /// The first epoch whose committee it is.
        from_epoch: u64,
        /// The registered gateways of the committee region.
        members: Vec<GatewayId>,
    },
    /// A meter's state after its last attested reading (written with the
    /// attestation, in the same batch); on start the latest per meter is
    /// restored, so a replayed or overlapping reading stays refused.
    Meter {
        /// The meter.
        meter: MeterId,
        /// Its state after the reading.
        state: MeterState,
    },
}

/// What the node kept durably, handed back on start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    /// Every record persisted, in order.
    pub records: Vec<Record>,
}

/// Something the node observed, for logs and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// An epoch's summary is final.
    Finalized {
        /// The epoch.
        epoch: u64,
        /// The deciding round.
        round: u32,
        /// The summary's hash.
        summary: Hash32,
    },
    /// An epoch cannot progress, and why.
    Stalled {
        /// The epoch.
        epoch: u64,
        /// Why.
        reason: Stall,
    },
}

/// Why an epoch is stalled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stall {
    /// The previous epoch is not final, so this one's summary cannot be computed.
    WaitingForPrevious,
    /// Fewer than [`crate::committee::MIN_COMMITTEE`] members are registered.
    CommitteeTooSmall,
    /// Rounds keep failing: no quorum agrees (round reached).
    NoQuorum(u32),
}

/// An effect for the driver to carry out.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Publish an encoded envelope on a topic.
    Publish {
        /// The topic.
        topic: Topic,
        /// The encoded envelope.
        bytes: Vec<u8>,
    },
    /// Ask `peer`; answer with [`Input::FetchResponse`] of the same id.
    Fetch {
        /// The fetch's id.
        id: u64,
        /// Whom to ask.
        peer: GatewayId,
        /// What to ask.
        request: Request,
    },
    /// Answer the [`Input::FetchRequest`] of this id.
    Respond {
        /// The request's id.
        id: u64,
        /// The answer.
        response: Response,
    },
    /// Write these records durably, in order, after all earlier persists;
    /// then send [`Input::Persisted`] with this id. Outputs that depend on
    /// the batch are held until then.
    Persist {
        /// The persist's id.
        id: u64,
        /// The records.
        batch: Vec<Record>,
    },
    /// Transmit this beacon now.
    TransmitBeacon {
        /// The epoch.
        epoch: u64,
        /// The payload.
        beacon_id: BeaconId,
    },
    /// Sign this anchor digest with the anchor key and submit it.
    SignAnchor {
        /// First epoch covered.
        first: u64,
        /// Last epoch covered.
        last: u64,
        /// Merkle root over the summaries' hashes.
        root: Hash32,
        /// The EIP-712 digest to sign.
        digest: Hash32,
    },
    /// The verdict on the [`Input::MeterReading`] of this id: the id of the
    /// attestation this gateway signed and published, or the meter rule that
    /// refused the reading (`reason.as_str()` is its stable code).
    MeterVerdict {
        /// The reading's id.
        id: u64,
        /// The attestation's message id, or why the reading was refused.
        result: Result<Hash32, meter::Reason>,
    },
    /// An observation.
    Event(Event),
    /// Nothing more to do until this moment (Unix ms): call
    /// [`Node::handle_input`] with [`Input::Timeout`] then, or earlier on input.
    Timeout(u64),
}

/// Counters of the node (plain integers; the daemon exports them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Reports admitted to a pool.
    pub reports_admitted: u64,
    /// Refusals by reason code.
    pub refused: BTreeMap<&'static str, u64>,
    /// Signatures verified.
    pub signatures_verified: u64,
    /// Consensus messages dropped as duplicates before verification.
    pub duplicates: u64,
    /// Proposals sent.
    pub proposals_sent: u64,
    /// Votes sent.
    pub votes_sent: u64,
    /// Votes not signed because they would conflict with a stored one.
    pub conflicting_votes_refused: u64,
    /// Messages published.
    pub published: u64,
    /// Bytes published.
    pub published_bytes: u64,
    /// Fetches sent.
    pub fetches: u64,
    /// Epochs finalized.
    pub finalized: u64,
    /// Epochs finalized from a fetched certificate.
    pub caught_up: u64,
    /// Outputs dropped because the queue was full.
    pub outputs_dropped: u64,
    /// Equivocations seen (conflicting proposals or votes from one member).
    pub equivocations: u64,
    /// Meter readings attested.
    pub meter_attested: u64,
    /// Meter readings refused, by reason code ([`meter::Reason::as_str`]).
    pub meter_refused: BTreeMap<&'static str, u64>,
}

/// Where an epoch stands, for the status endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Collecting reports.
    Open,
    /// In its grace period.
    Grace,
    /// The committee is deciding it, in this round.
    Deciding(u32),
    /// Final.
    Finalized,
    /// Not progressing.
    Stalled(Stall),
}

/// Most outputs queued before [`Node::poll_output`] drains them. One input
/// causes at most a few dozen (a vote, a proposal, fetches, a decision); 4096
/// leaves a driver that polls once per input far from it. Beyond it outputs
/// are dropped and counted, which gossip and fetch retries tolerate.
pub const MAX_QUEUED_OUTPUTS: usize = 4096;

/// Most consensus message ids remembered per epoch for duplicate suppression:
/// a round has n ≤ 128 prevotes, n precommits and a proposal; 16 rounds of
/// that (the rounds kept ahead) fit.
pub const MAX_SEEN_MESSAGES: usize = 16 * (2 * codec::MAX_COMMITTEE + 1);

/// Finalized epochs kept in memory to answer catch-up fetches and build
/// anchors. 256 epochs of an hour are ten days: a gateway partitioned longer
/// re-syncs from the chain's anchors instead.
pub const KEEP_FINALIZED: usize = 256;

/// Own messages kept per epoch for rebroadcast: a proposal and two votes per
/// round for the rounds kept ahead ([`crate::consensus::MAX_ROUNDS_AHEAD`]),
/// the oldest dropped first.
pub const MAX_RESENT: usize = 3 * crate::consensus::MAX_ROUNDS_AHEAD as usize;

/// Distinct proposed values remembered per epoch: one per round kept.
pub const MAX_PROPOSALS: usize = 2 * crate::consensus::MAX_ROUNDS_AHEAD as usize;

#[derive(Clone, Debug)]
struct Proposed {
    summary: EpochSummary,
    report_ids: Vec<Hash32>,
    proposer: GatewayId,
}

#[derive(Clone, Debug)]
struct Finalized {
    summary: EpochSummary,
    hash: Hash32,
    certificate: Certificate,
}

#[derive(Debug, Default)]
struct EpochState {
    pool: Pool,
    instance: Option<Instance>,
    proposals: BTreeMap<Hash32, Proposed>,
    /// Values whose reports are being fetched, by fetch id.
    fetching: BTreeMap<u64, Hash32>,
    commit_sigs: BTreeMap<(u32, Hash32), BTreeMap<GatewayId, [u8; 64]>>,
    deadlines: BTreeMap<(u32, TimeoutStep), u64>,
    seen: BTreeSet<Hash32>,
    decision_fetch: Option<u64>,
    /// When to next ask a member for this epoch's decision while deciding.
    poll_at: Option<u64>,
    /// Rounds this member proposed in: (value, valid round, encoded proposal).
    proposed: BTreeMap<u32, (Hash32, Option<u32>, Vec<u8>)>,
    /// This member's proposals and votes in this epoch, for rebroadcast.
    /// Each with the persist it waits for (`None` once durable and sent).
    sent: Vec<(Option<u64>, Vec<u8>)>,
    beaconed: bool,
    stalled: Option<Stall>,
}

/// One registry and the committee drawn from it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Registry {
    members: BTreeSet<GatewayId>,
    committee: Committee,
}

/// What [`Node`] answers for an epoch before any registry is known (never:
/// `Node::new` always sets one).
static EMPTY_REGISTRY: std::sync::LazyLock<Registry> = std::sync::LazyLock::new(|| Registry::new([]));

impl Registry {
    fn new(members: impl IntoIterator<Item = GatewayId>) -> Registry {
        let members: BTreeSet<GatewayId> = members.into_iter().collect();
        let committee = Committee::new(members.iter().copied(), &Hash32::ZERO);
        Registry { members, committee }
    }
}

/// The gateway's brain. See the crate docs for the run loop.
pub struct Node {
    config: Config,
    key: Keypair,
    me: GatewayId,
    domain: Domain,
    /// The registry by the first epoch it applies to (see [`Input::Registry`]).
    registries: BTreeMap<u64, Registry>,
    /// Chain time of the newest registry applied, Unix ms.
    registry_as_of: u64,
    epochs: BTreeMap<u64, EpochState>,
    finalized: BTreeMap<u64, Finalized>,
    /// Votes this member signed: (epoch, round, step) → value.
    signed: BTreeMap<(u64, u32, VoteStep), Option<Hash32>>,
    queue: VecDeque<Output>,
    held: BTreeMap<u64, Vec<Output>>,
    next_id: u64,
    now_ms: u64,
    /// Highest epoch a committee member was seen deciding.
    max_seen_epoch: u64,
    catch_up_peer: Option<GatewayId>,
    anchored: BTreeSet<u64>,
    /// Each meter's state after its last attested reading. The daemon passes
    /// readings of its configured meters only (it supplies their capacity),
    /// so this holds as many entries as the gateway has meters.
    meters: BTreeMap<MeterId, MeterState>,
    metrics: Metrics,
}

impl Node {
    /// A node from its config, key, registry and stored state, at `now_ms`.
    pub fn new(config: Config, key: Keypair, registry: Vec<GatewayId>, stored: Stored, now_ms: u64) -> Node {
        let me = key.gateway_id();
        let domain = Domain::new(&config.network);
        let registry = Registry::new(registry);
        let mut node = Node {
            config,
            key,
            me,
            domain,
            registries: BTreeMap::new(),
            registry_as_of: 0,
            epochs: BTreeMap::new(),
            finalized: BTreeMap::new(),
            signed: BTreeMap::new(),
            queue: VecDeque::new(),
            held: BTreeMap::new(),
            next_id: 0,
            now_ms,
            max_seen_epoch: 0,
            catch_up_peer: None,
            anchored: BTreeSet::new(),
            meters: BTreeMap::new(),
            metrics: Metrics::default(),
        };
        let mut republish = Vec::new();
        let mut reports = Vec::new();
        // Finalized epochs first: votes of those need no restoring.
        let (finalized, votes): (Vec<Record>, Vec<Record>) =
            stored.records.into_iter().partition(|r| matches!(r, Record::Finalized { .. }));
        for record in finalized.into_iter().chain(votes) {
            match record {
                Record::Proposal(envelope) => {
                    if let Ok(Message::Proposal(p)) = envelope.open()
                        && !node.finalized.contains_key(&p.summary.epoch)
                        && let Ok(bytes) = codec::encode_envelope(&envelope)
                    {
                        let epoch = p.summary.epoch;
                        let value = pool::summary_hash(&p.summary);
                        let proposer = node.me;
                        let state = node.epochs.entry(epoch).or_default();
                        state.proposals.entry(value).or_insert(Proposed {
                            summary: p.summary,
                            report_ids: p.report_ids,
                            proposer,
                        });
                        state.proposed.insert(p.round, (value, p.valid_round, bytes));
                        republish.push(envelope);
                    }
                }
                Record::Finalized { summary, certificate } => {
                    let hash = pool::summary_hash(&summary);
                    node.finalized.insert(summary.epoch, Finalized { summary, hash, certificate });
                }
                Record::Vote(envelope) => {
                    if let Ok(Message::Vote(v)) = envelope.open() {
                        node.signed.insert((v.epoch, v.round, v.step), v.value);
                        if !node.finalized.contains_key(&v.epoch) {
                            if let Some(sig) = v.commit_signature
                                && let Some(value) = v.value
                            {
                                let me = node.me;
                                let state = node.epochs.entry(v.epoch).or_default();
                                state.commit_sigs.entry((v.round, value)).or_default().insert(me, sig);
                            }
                            let instance = node.instance(v.epoch);
                            instance.restore(v.round, v.step, v.value);
                            // The vote is durable but may never have left:
                            // send it again (the same signed bytes).
                            republish.push(envelope);
                        }
                    }
                }
                Record::Report(envelope) => reports.push(envelope),
                Record::Registry { from_epoch, members } => {
                    node.registries.insert(from_epoch, Registry::new(members));
                }
                Record::Settled { .. } => {}
                Record::Meter { meter, state } => {
                    let last = node.meters.entry(meter).or_insert(state);
                    if state.sequence > last.sequence {
                        *last = state;
                    }
                }
            }
        }
        // The registry passed in: every epoch's when none was stored, else a
        // change from the next epoch on (the undecided ones keep theirs).
        if node.registries.is_empty() {
            // Stored too, so that after a restart the epochs before the
            // first change still have their committee.
            let members: Vec<GatewayId> = registry.members.iter().copied().collect();
            node.registries.insert(0, registry);
            let id = node.id_next();
            node.push(Output::Persist { id, batch: vec![Record::Registry { from_epoch: 0, members }] });
        } else {
            node.registry_changed(registry, now_ms);
        }
        // Own reports after the finalized epochs are known (the pool's
        // context needs the previous summary when it is there).
        for envelope in reports {
            node.restore_report(envelope);
        }
        for envelope in republish {
            if let Ok(bytes) = codec::encode_envelope(&envelope) {
                node.push(Output::Publish { topic: Topic::Region(node.config.region), bytes });
            }
        }
        node.prune();
        node
    }

    /// This gateway's id.
    pub fn id(&self) -> GatewayId {
        self.me
    }

    /// The counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The finalized summary of an epoch and its certificate.
    pub fn finalized(&self, epoch: u64) -> Option<(&EpochSummary, &Certificate)> {
        self.finalized.get(&epoch).map(|f| (&f.summary, &f.certificate))
    }

    /// Finalized epochs held in memory, in order.
    pub fn finalized_epochs(&self) -> impl Iterator<Item = u64> + '_ {
        self.finalized.keys().copied()
    }

    /// Where an epoch stands at the last input's time.
    pub fn status(&self, epoch: u64) -> Status {
        if self.finalized.contains_key(&epoch) {
            return Status::Finalized;
        }
        if let Some(stall) = self.epochs.get(&epoch).and_then(|e| e.stalled) {
            return Status::Stalled(stall);
        }
        match self.config.clock.phase(epoch, self.now_ms) {
            meshd_protocol::epoch::Phase::Pending | meshd_protocol::epoch::Phase::Open => Status::Open,
            meshd_protocol::epoch::Phase::Grace => Status::Grace,
            meshd_protocol::epoch::Phase::Deciding => Status::Deciding(
                self.epochs.get(&epoch).and_then(|e| e.instance.as_ref()).map_or(0, Instance::round),
            ),
        }
    }

    /// The next output. Drain until it returns [`Output::Timeout`].
    pub fn poll_output(&mut self) -> Output {
        if let Some(out) = self.queue.pop_front() {
            return out;
        }
        Output::Timeout(self.next_deadline())
    }

    /// Feeds one input.
    pub fn handle_input(&mut self, input: Input) {
        match input {
            Input::Timeout { now_ms } => self.tick(now_ms),
            Input::Gossip { now_ms, from, bytes } => {
                self.tick(now_ms);
                self.on_gossip(from, &bytes);
            }
            Input::FetchRequest { now_ms, id, from, request } => {
                self.tick(now_ms);
                let response = self.answer(&request);
                let _ = from;
                self.push(Output::Respond { id, response });
            }
            Input::FetchResponse { now_ms, id, result } => {
                self.tick(now_ms);
                self.on_fetch_response(id, result);
            }
            Input::Persisted { now_ms, id } => {
                for state in self.epochs.values_mut() {
                    for (pending, _) in &mut state.sent {
                        if *pending == Some(id) {
                            *pending = None;
                        }
                    }
                }
                if let Some(outputs) = self.held.remove(&id) {
                    for out in outputs {
                        self.push(out);
                    }
                }
                self.tick(now_ms);
            }
            Input::BeaconHeard { now_ms, heard } => {
                self.tick(now_ms);
                self.on_heard(heard);
            }
            Input::MeterReading { now_ms, id, reading, capacity_w } => {
                self.tick(now_ms);
                self.on_meter_reading(id, reading, capacity_w);
            }
            Input::Registry { now_ms, as_of_ms, members } => {
                self.tick(now_ms);
                self.registry_changed(Registry::new(members), as_of_ms);
                self.tick(now_ms);
            }
        }
    }

    /// A registry as of chain time `as_of_ms`, in effect from the epoch after
    /// that time's (from the first epoch before genesis), or from the first
    /// later epoch not yet being decided; stored so a restart keeps it.
    fn registry_changed(&mut self, registry: Registry, as_of_ms: u64) {
        if as_of_ms < self.registry_as_of {
            return;
        }
        self.registry_as_of = as_of_ms;
        let mut from_epoch = match self.config.clock.epoch_at(as_of_ms) {
            Ok(epoch) => epoch + 1,
            Err(_) => 0,
        };
        // An epoch being decided (or decided) keeps the committee it has.
        while self.finalized.contains_key(&from_epoch)
            || self.epochs.get(&from_epoch).and_then(|s| s.instance.as_ref()).is_some_and(Instance::started)
        {
            from_epoch += 1;
        }
        if *self.registry_at(from_epoch) == registry {
            return;
        }
        let members: Vec<GatewayId> = registry.members.iter().copied().collect();
        self.registries.split_off(&from_epoch);
        self.registries.insert(from_epoch, registry);
        let id = self.id_next();
        self.push(Output::Persist { id, batch: vec![Record::Registry { from_epoch, members }] });
    }

    /// The registry as of `epoch`'s start.
    fn registry_at(&self, epoch: u64) -> &Registry {
        match self.registries.range(..=epoch).next_back().or_else(|| self.registries.first_key_value()) {
            Some((_, registry)) => registry,
            None => &EMPTY_REGISTRY,
        }
    }

    /// The committee deciding `epoch`.
    fn committee(&self, epoch: u64) -> &Committee {
        &self.registry_at(epoch).committee
    }

    /// The members of the committee deciding `epoch`, in order.
    pub fn committee_members(&self, epoch: u64) -> &[GatewayId] {
        self.committee(epoch).members()
    }

    fn id_next(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn push(&mut self, out: Output) {
        if self.queue.len() >= MAX_QUEUED_OUTPUTS {
            self.metrics.outputs_dropped += 1;
            return;
        }
        if let Output::Publish { bytes, .. } = &out {
            self.metrics.published += 1;
            self.metrics.published_bytes += bytes.len() as u64;
        }
        if let Output::Fetch { .. } = &out {
            self.metrics.fetches += 1;
        }
        self.queue.push_back(out);
    }

    fn refuse(&mut self, reason: &Reason) {
        *self.metrics.refused.entry(reason.as_str()).or_default() += 1;
    }

    fn instance(&mut self, epoch: u64) -> &mut Instance {
        let size = self.committee(epoch).len();
        let me = self.committee(epoch).index(&self.me);
        let state = self.epochs.entry(epoch).or_default();
        state.instance.get_or_insert_with(|| Instance::new(size, me, epoch))
    }

    fn previous(&self, epoch: u64) -> Option<Hash32> {
        if epoch <= self.config.first_epoch {
            return Some(Hash32::ZERO);
        }
        self.finalized.get(&(epoch - 1)).map(|f| f.hash)
    }

    fn context(&self, epoch: u64) -> Option<Context> {
        Some(Context {
            region: self.config.region,
            epoch,
            previous: self.previous(epoch)?,
            committee_hash: self.committee(epoch).hash(),
            registry: self.registry_at(epoch).members.clone(),
            members: self.committee(epoch).members().len(),
            witness: self.config.witness.clone(),
            rewards: self.config.rewards,
            limits: self.config.limits.clone(),
            clock: self.config.clock,
            meter: self.config.meter.clone(),
        })
    }

    /// The lowest epoch not finalized that can be decided by now.
    fn deciding_epochs(&self) -> Vec<u64> {
        let Ok(current) = self.config.clock.epoch_at(self.now_ms) else { return Vec::new() };
        let low = self
            .finalized
            .keys()
            .next_back()
            .map_or(self.config.first_epoch, |e| e + 1)
            .max(self.config.first_epoch);
        (low..current.saturating_add(1))
            .filter(|e| !self.finalized.contains_key(e))
            .filter(|e| self.config.clock.decides_at_ms(*e).is_ok_and(|t| t <= self.now_ms))
            .take(2)
            .collect()
    }

    fn tick(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        let now = self.now_ms;
        // Expired consensus timeouts.
        let mut fired: Vec<(u64, u32, TimeoutStep)> = Vec::new();
        for (epoch, state) in &mut self.epochs {
            let due: Vec<(u32, TimeoutStep)> =
                state.deadlines.iter().filter(|(_, at)| **at <= now).map(|(k, _)| *k).collect();
            for k in due {
                state.deadlines.remove(&k);
                fired.push((*epoch, k.0, k.1));
            }
        }
        for (epoch, round, step) in fired {
            let mut actions = Vec::new();
            self.instance(epoch).on_timeout(round, step, &mut actions);
            self.apply(epoch, actions);
        }
        // Start deciding epochs whose grace period is over.
        for epoch in self.deciding_epochs() {
            self.start_deciding(epoch);
            self.poll_decision(epoch);
        }
        self.beacon();
        self.prune();
    }

    fn start_deciding(&mut self, epoch: u64) {
        if self.committee(epoch).len() < crate::committee::MIN_COMMITTEE {
            self.stall(epoch, Stall::CommitteeTooSmall);
            return;
        }
        if self.previous(epoch).is_none() {
            self.stall(epoch, Stall::WaitingForPrevious);
            return;
        }
        if self.epochs.get(&epoch).and_then(|e| e.instance.as_ref()).is_some_and(Instance::started) {
            let round = self.epochs.get(&epoch).and_then(|e| e.instance.as_ref()).map_or(0, Instance::round);
            if round >= self.config.stall_rounds {
                self.stall(epoch, Stall::NoQuorum(round));
            }
            return;
        }
        if let Some(state) = self.epochs.get_mut(&epoch) {
            state.stalled = None;
        }
        let mut actions = Vec::new();
        self.instance(epoch).start(&mut actions);
        self.apply(epoch, actions);
        // Proposals that arrived before the previous epoch was final.
        let pending: Vec<Hash32> =
            self.epochs.get(&epoch).map(|s| s.proposals.keys().copied().collect()).unwrap_or_default();
        for value in pending {
            self.evaluate(epoch, value);
        }
    }

    /// A member stuck in an epoch the others already decided hears nothing
    /// more of it: every [`Node::poll_interval`] it asks the next member for
    /// the decision (an answer is a certificate, checked like any other).
    fn poll_decision(&mut self, epoch: u64) {
        let interval = self.poll_interval();
        let now = self.now_ms;
        let Some(state) = self.epochs.get_mut(&epoch) else { return };
        if !state.instance.as_ref().is_some_and(Instance::started) || state.decision_fetch.is_some() {
            return;
        }
        match state.poll_at {
            None => state.poll_at = Some(now + interval),
            Some(at) if at <= now => {
                state.poll_at = Some(now + interval);
                // Gossip may have lost some: send this epoch's proposal and
                // votes again (receivers drop copies by id before verifying).
                // Tendermint's liveness assumes every message sent is
                // eventually delivered; this makes it so over lossy links.
                let again: Vec<Vec<u8>> =
                    state.sent.iter().filter(|(p, _)| p.is_none()).map(|(_, b)| b.clone()).collect();
                for bytes in again {
                    self.push(Output::Publish { topic: Topic::Region(self.config.region), bytes });
                }
                let members = self.committee(epoch).members();
                let n = members.len();
                let turn = (now / interval.max(1)) as usize;
                let peer = (0..n).map(|k| members[(turn + k) % n]).find(|m| *m != self.me);
                if let Some(peer) = peer {
                    let id = self.id_next();
                    self.epochs.entry(epoch).or_default().decision_fetch = Some(id);
                    self.push(Output::Fetch { id, peer, request: Request::Decision { epoch } });
                }
            }
            Some(_) => {}
        }
    }

    /// How often a deciding member asks a peer for the decision: twice the
    /// propose timeout, so a healthy committee decides before anyone asks.
    fn poll_interval(&self) -> u64 {
        2 * self.config.timeouts.propose_ms.max(1)
    }

    fn stall(&mut self, epoch: u64, reason: Stall) {
        let state = self.epochs.entry(epoch).or_default();
        if state.stalled != Some(reason) {
            state.stalled = Some(reason);
            self.push(Output::Event(Event::Stalled { epoch, reason }));
        }
    }

    fn next_deadline(&self) -> u64 {
        let mut next = u64::MAX;
        for state in self.epochs.values() {
            if let Some(at) = state.deadlines.values().min() {
                next = next.min(*at);
            }
            // While a decision fetch is out, its answer (or failure) is the
            // next event; waking for the poll before then would spin.
            if let Some(at) = state.poll_at
                && state.decision_fetch.is_none()
            {
                next = next.min(at.max(self.now_ms));
            }
        }
        if let Ok(current) = self.config.clock.epoch_at(self.now_ms) {
            for e in [current.saturating_sub(1), current, current + 1] {
                if let Ok(t) = self.config.clock.decides_at_ms(e)
                    && t > self.now_ms
                    && !self.finalized.contains_key(&e)
                {
                    next = next.min(t);
                }
            }
            if let Some(t) = self.beacon_time(current)
                && current >= self.config.first_epoch
                && self.registry_at(current).members.contains(&self.me)
                && !self.epochs.get(&current).is_some_and(|s| s.beaconed)
            {
                next = next.min(t.max(self.now_ms));
            }
        } else if let Ok(t) = self.config.clock.start_ms(0) {
            next = next.min(t);
        }
        next
    }

    fn beacon_time(&self, epoch: u64) -> Option<u64> {
        let previous = self.previous(epoch)?;
        let start = self.config.clock.start_ms(epoch).ok()?;
        Some(beacon_time_ms(&previous, &self.me, epoch, start, self.config.clock.length_ms()))
    }

    fn beacon(&mut self) {
        let Ok(epoch) = self.config.clock.epoch_at(self.now_ms) else { return };
        if epoch < self.config.first_epoch || !self.registry_at(epoch).members.contains(&self.me) {
            return;
        }
        let Some(at) = self.beacon_time(epoch) else { return };
        if self.now_ms < at || self.epochs.get(&epoch).is_some_and(|s| s.beaconed) {
            return;
        }
        let Some(entropy) = self.previous(epoch) else { return };
        self.epochs.entry(epoch).or_default().beaconed = true;
        let radio = self.config.radio.clone();
        let report = BeaconReport {
            region: self.config.region,
            epoch,
            location: radio.location,
            antenna_gain_ddbi: radio.antenna_gain_ddbi,
            tx_power_ddbm: radio.tx_power_ddbm,
            frequency_hz: radio.frequency_hz,
            datarate: radio.datarate,
            entropy,
            beacon_id: beacon::beacon_id(&entropy, &self.me, epoch),
            transmitted_at_ms: self.now_ms,
        };
        let beacon_id = report.beacon_id;
        // Stored before it leaves: after a restart the stored report says
        // this epoch's beacon is done (see `restore_report`).
        let Some((envelope, bytes)) = self.seal(&Message::BeaconReport(report)) else { return };
        let _ = self.offer(epoch, envelope.clone());
        self.persist_then(
            vec![Record::Report(envelope)],
            vec![
                Output::TransmitBeacon { epoch, beacon_id },
                Output::Publish { topic: Topic::Region(self.config.region), bytes },
            ],
        );
    }

    fn on_heard(&mut self, heard: Heard) {
        let Ok(epoch) = self.config.clock.epoch_at(self.now_ms) else { return };
        let report = WitnessReport {
            region: self.config.region,
            epoch,
            beacon_id: heard.beacon_id,
            location: self.config.radio.location,
            antenna_gain_ddbi: self.config.radio.antenna_gain_ddbi,
            rssi_ddbm: heard.rssi_ddbm,
            snr_ddb: heard.snr_ddb,
            frequency_hz: heard.frequency_hz,
            datarate: heard.datarate,
            received_at_ms: self.now_ms,
            tmst_us: heard.tmst_us,
        };
        self.publish_report(epoch, Message::WitnessReport(report));
    }

    /// Seals an own report: its envelope is stored (the outbox) before it
    /// is published.
    fn publish_report(&mut self, epoch: u64, message: Message) {
        let Some((envelope, bytes)) = self.seal(&message) else { return };
        let _ = self.offer(epoch, envelope.clone());
        self.persist_then(
            vec![Record::Report(envelope)],
            vec![Output::Publish { topic: Topic::Region(self.config.region), bytes }],
        );
    }

    fn seal(&self, message: &Message) -> Option<(Envelope, Vec<u8>)> {
        let envelope = Envelope::seal(&self.domain, &self.key, message).ok()?;
        let bytes = codec::encode_envelope(&envelope).ok()?;
        Some((envelope, bytes))
    }

    /// Persists `batch`, holding `outputs` until it is durable.
    fn persist_then(&mut self, batch: Vec<Record>, outputs: Vec<Output>) {
        let id = self.id_next();
        self.push(Output::Persist { id, batch });
        self.held.insert(id, outputs);
    }

    /// An own report from the store: back into its pool, and out again
    /// while its epoch still takes reports.
    fn restore_report(&mut self, envelope: Envelope) {
        if envelope.signer != self.me.0 {
            return;
        }
        let (epoch, beacon) = match envelope.open() {
            Ok(Message::BeaconReport(b)) => (b.epoch, true),
            Ok(Message::WitnessReport(w)) => (w.epoch, false),
            Ok(Message::MeterAttestation(a)) => (a.epoch, false),
            _ => return,
        };
        if self.finalized.contains_key(&epoch) {
            return;
        }
        if beacon {
            self.epochs.entry(epoch).or_default().beaconed = true;
        }
        if !self.config.clock.timing(epoch, self.now_ms).admitted() {
            return;
        }
        let Ok(bytes) = codec::encode_envelope(&envelope) else { return };
        let _ = self.offer(epoch, envelope);
        self.push(Output::Publish { topic: Topic::Region(self.config.region), bytes });
    }

    fn offer(&mut self, epoch: u64, envelope: Envelope) -> Result<Hash32, Reason> {
        let Some(ctx) = self.report_context(epoch) else { return Err(Reason::WrongEpoch) };
        let clock = self.config.clock;
        let domain = self.domain.clone();
        let now = self.now_ms;
        let state = self.epochs.entry(epoch).or_default();
        let result = state.pool.offer(&domain, &ctx, &clock, now, envelope);
        match &result {
            Ok(_) => {
                self.metrics.reports_admitted += 1;
                self.metrics.signatures_verified += 1;
            }
            Err(reason) => {
                if !matches!(reason, Reason::Duplicate | Reason::Early | Reason::TooLate) {
                    self.metrics.signatures_verified += 1;
                }
                self.refuse(reason);
            }
        }
        result
    }

    /// Runs the meter rules on a reading from this gateway's ingest; an
    /// accepted one becomes an attestation, stored with the meter's new state
    /// before it is published and the verdict given.
    fn on_meter_reading(&mut self, id: u64, envelope: Envelope, capacity_w: u64) {
        if let Err(reason) = self.attest(id, envelope, capacity_w) {
            *self.metrics.meter_refused.entry(reason.as_str()).or_default() += 1;
            self.push(Output::MeterVerdict { id, result: Err(reason) });
        }
    }

    fn attest(&mut self, id: u64, envelope: Envelope, capacity_w: u64) -> Result<(), meter::Reason> {
        let Ok(Message::MeterReading(reading)) = envelope.open() else {
            return Err(meter::Reason::WrongEnvelope);
        };
        let last = self.meters.get(&reading.meter);
        let accepted = meter::check(
            &self.domain,
            &envelope,
            &reading,
            last,
            capacity_w,
            self.now_ms,
            &self.config.meter,
        )?;
        let epoch = pool::attestation_epoch(&self.config.clock, &reading)
            .filter(|e| self.config.clock.timing(*e, self.now_ms).admitted())
            .ok_or(meter::Reason::EpochClosed)?;
        let attestation = MeterAttestation {
            region: self.config.region,
            epoch,
            reading: envelope,
            received_at_ms: self.now_ms,
        };
        let (sealed, bytes) =
            self.seal(&Message::MeterAttestation(attestation)).ok_or(meter::Reason::NotAdmitted)?;
        let attestation_id = self.offer(epoch, sealed.clone()).map_err(|_| meter::Reason::NotAdmitted)?;
        self.meters.insert(reading.meter, accepted.state);
        self.metrics.meter_attested += 1;
        self.persist_then(
            vec![Record::Report(sealed), Record::Meter { meter: reading.meter, state: accepted.state }],
            vec![
                Output::Publish { topic: Topic::Region(self.config.region), bytes },
                Output::MeterVerdict { id, result: Ok(attestation_id) },
            ],
        );
        Ok(())
    }

    /// A context for admitting reports: the previous hash may not be known
    /// yet (beacon derivation is checked when counting, not on admission).
    fn report_context(&self, epoch: u64) -> Option<Context> {
        let mut ctx = self.context(epoch).or_else(|| {
            let mut c = self.context(self.config.first_epoch)?;
            c.epoch = epoch;
            Some(c)
        })?;
        ctx.epoch = epoch;
        Some(ctx)
    }

    fn on_gossip(&mut self, from: GatewayId, bytes: &[u8]) {
        let Ok(envelope) = codec::decode_envelope(bytes) else {
            self.refuse(&Reason::Malformed);
            return;
        };
        let _ = from;
        match envelope.kind {
            meshd_protocol::message::Kind::BeaconReport
            | meshd_protocol::message::Kind::WitnessReport
            | meshd_protocol::message::Kind::MeterAttestation => {
                // The epoch is in the body; peek without verifying (the pool verifies once).
                let epoch = match envelope.open() {
                    Ok(Message::BeaconReport(b)) => b.epoch,
                    Ok(Message::WitnessReport(w)) => w.epoch,
                    Ok(Message::MeterAttestation(a)) => a.epoch,
                    _ => {
                        self.refuse(&Reason::Malformed);
                        return;
                    }
                };
                let Ok(current) = self.config.clock.epoch_at(self.now_ms) else { return };
                if epoch + 1 < current || epoch > current + 1 {
                    self.refuse(&Reason::WrongEpoch);
                    return;
                }
                let _ = self.offer(epoch, envelope);
            }
            meshd_protocol::message::Kind::Proposal | meshd_protocol::message::Kind::Vote => {
                self.on_consensus(envelope)
            }
            meshd_protocol::message::Kind::Certificate | meshd_protocol::message::Kind::EpochSummary => {}
            _ => self.refuse(&Reason::WrongKind),
        }
    }

    fn on_consensus(&mut self, envelope: Envelope) {
        let Ok(id) = envelope.id() else { return };
        let signer = GatewayId(envelope.signer);
        let Ok(message) = envelope.open() else {
            self.refuse(&Reason::Malformed);
            return;
        };
        let (region, epoch) = match &message {
            Message::Proposal(p) => (p.summary.region, p.summary.epoch),
            Message::Vote(v) => (v.region, v.epoch),
            _ => return,
        };
        let Some(member) = self.committee(epoch).index(&signer) else {
            self.refuse(&Reason::Unregistered);
            return;
        };
        if region != self.config.region {
            self.refuse(&Reason::WrongRegion);
            return;
        }
        let Ok(current) = self.config.clock.epoch_at(self.now_ms) else { return };
        let oldest = self.finalized.keys().next_back().map_or(self.config.first_epoch, |e| e + 1);
        if epoch > current || epoch < self.config.first_epoch {
            self.refuse(&Reason::WrongEpoch);
            return;
        }
        if self.finalized.contains_key(&epoch) || epoch + 2 < oldest {
            return;
        }
        // Duplicates are dropped before the signature is verified.
        let state = self.epochs.entry(epoch).or_default();
        if state.seen.contains(&id) {
            self.metrics.duplicates += 1;
            return;
        }
        if state.seen.len() < MAX_SEEN_MESSAGES {
            state.seen.insert(id);
        }
        self.metrics.signatures_verified += 1;
        if signature::verify(&self.domain, &envelope).is_err() {
            self.refuse(&Reason::BadSignature);
            return;
        }
        // A member deciding a later epoch has finalized the earlier ones.
        if epoch > self.max_seen_epoch || self.catch_up_peer.is_none() {
            self.max_seen_epoch = self.max_seen_epoch.max(epoch);
            self.catch_up_peer = Some(signer);
        }
        self.catch_up();
        if epoch > oldest + 1 {
            return;
        }
        let mut actions = Vec::new();
        match message {
            Message::Proposal(p) => {
                if self.instance(epoch).proposer(p.round) != member {
                    self.refuse(&Reason::NotProposer);
                    return;
                }
                let value = pool::summary_hash(&p.summary);
                let state = self.epochs.entry(epoch).or_default();
                if !state.proposals.contains_key(&value) && state.proposals.len() < MAX_PROPOSALS {
                    state.proposals.insert(
                        value,
                        Proposed {
                            summary: p.summary.clone(),
                            report_ids: p.report_ids.clone(),
                            proposer: signer,
                        },
                    );
                }
                let before = self.instance(epoch).equivocations();
                self.instance(epoch).on_proposal(member, p.round, p.valid_round, value, &mut actions);
                self.metrics.equivocations += self.instance(epoch).equivocations() - before;
                self.apply(epoch, actions);
                self.evaluate(epoch, value);
            }
            Message::Vote(v) => {
                if v.step == VoteStep::Precommit
                    && let Some(value) = v.value
                {
                    let Some(sig) = v.commit_signature else {
                        self.refuse(&Reason::BadSignature);
                        return;
                    };
                    let bytes = Certificate::sign_bytes(&self.config.network, region, epoch, v.round, &value);
                    self.metrics.signatures_verified += 1;
                    if signature::verify_raw(&signer.0, &bytes, &sig).is_err() {
                        self.refuse(&Reason::BadSignature);
                        return;
                    }
                    let state = self.epochs.entry(epoch).or_default();
                    state.commit_sigs.entry((v.round, value)).or_default().entry(signer).or_insert(sig);
                }
                let before = self.instance(epoch).equivocations();
                self.instance(epoch).on_vote(member, v.round, v.step, v.value, &mut actions);
                self.metrics.equivocations += self.instance(epoch).equivocations() - before;
                self.apply(epoch, actions);
            }
            _ => {}
        }
    }

    /// Fetches the decision of the lowest unfinalized epoch from a member
    /// seen deciding a later one.
    fn catch_up(&mut self) {
        let Some(peer) = self.catch_up_peer else { return };
        let low = self.finalized.keys().next_back().map_or(self.config.first_epoch, |e| e + 1);
        if self.max_seen_epoch <= low {
            return;
        }
        let state = self.epochs.entry(low).or_default();
        if state.decision_fetch.is_some() {
            return;
        }
        let id = self.id_next();
        self.epochs.entry(low).or_default().decision_fetch = Some(id);
        self.push(Output::Fetch { id, peer, request: Request::Decision { epoch: low } });
    }

    /// Decides whether a proposed value is valid, fetching missing reports first.
    fn evaluate(&mut self, epoch: u64, value: Hash32) {
        let Some(ctx) = self.context(epoch) else { return };
        let Some(state) = self.epochs.get(&epoch) else { return };
        if state.instance.as_ref().and_then(|i| i.validity(&value)).is_some()
            || state.fetching.values().any(|v| *v == value)
        {
            return;
        }
        let Some(proposed) = state.proposals.get(&value).cloned() else { return };
        let missing: Vec<Hash32> =
            proposed.report_ids.iter().filter(|id| !state.pool.contains(id)).copied().collect();
        if !missing.is_empty() {
            let id = self.id_next();
            self.epochs.entry(epoch).or_default().fetching.insert(id, value);
            self.push(Output::Fetch {
                id,
                peer: proposed.proposer,
                request: Request::Reports { epoch, ids: missing },
            });
            return;
        }
        self.judge(epoch, value, &ctx, &proposed);
    }

    fn judge(&mut self, epoch: u64, value: Hash32, ctx: &Context, proposed: &Proposed) {
        let Some(state) = self.epochs.get(&epoch) else { return };
        let reports: Option<Vec<&Report>> = proposed.report_ids.iter().map(|id| state.pool.get(id)).collect();
        let valid = match reports {
            None => false,
            Some(reports) => match pool::summarize(ctx, &reports) {
                Ok(summary) if summary == proposed.summary => true,
                // The reports pass, but this member sums them up otherwise
                // (another previous summary, committee or registry).
                Ok(_) => {
                    *self.metrics.refused.entry("summary_mismatch").or_default() += 1;
                    false
                }
                Err((_, reason)) => {
                    *self.metrics.refused.entry(reason.as_str()).or_default() += 1;
                    false
                }
            },
        };
        let mut actions = Vec::new();
        self.instance(epoch).set_validity(value, valid, &mut actions);
        self.apply(epoch, actions);
    }

    fn on_fetch_response(&mut self, id: u64, result: Result<Response, FetchError>) {
        let found = self.epochs.iter().find_map(|(e, s)| {
            s.fetching
                .get(&id)
                .map(|v| (*e, Some(*v)))
                .or((s.decision_fetch == Some(id)).then_some((*e, None)))
        });
        let Some((epoch, value)) = found else { return };
        match value {
            Some(value) => {
                if let Some(s) = self.epochs.get_mut(&epoch) {
                    s.fetching.remove(&id);
                }
                if let (Ok(Response::Reports(list)), Some(ctx)) = (&result, self.context(epoch)) {
                    let wanted: BTreeSet<Hash32> = self
                        .epochs
                        .get(&epoch)
                        .and_then(|s| s.proposals.get(&value))
                        .map(|p| p.report_ids.iter().copied().collect())
                        .unwrap_or_default();
                    for bytes in list.iter().take(wanted.len()) {
                        let Ok(envelope) = codec::decode_envelope(bytes) else { continue };
                        if !envelope.id().is_ok_and(|i| wanted.contains(&i)) {
                            continue;
                        }
                        self.metrics.signatures_verified += 1;
                        match pool::verify_report(&self.domain, &ctx, envelope) {
                            Ok(report) => self.epochs.entry(epoch).or_default().pool.insert(report),
                            Err(reason) => self.refuse(&reason),
                        }
                    }
                }
                // Whatever is still missing now cannot be had from the proposer.
                let Some(ctx) = self.context(epoch) else { return };
                let Some(proposed) = self.epochs.get(&epoch).and_then(|s| s.proposals.get(&value)).cloned()
                else {
                    return;
                };
                self.judge(epoch, value, &ctx, &proposed);
            }
            None => {
                if let Some(s) = self.epochs.get_mut(&epoch) {
                    s.decision_fetch = None;
                }
                if let Ok(Response::Decision { summary, certificate }) = result
                    && self.certificate_valid(epoch, &summary, &certificate)
                {
                    self.metrics.caught_up += 1;
                    self.finalize(*summary, *certificate, None);
                    self.catch_up();
                }
            }
        }
    }

    fn certificate_valid(&mut self, epoch: u64, summary: &EpochSummary, certificate: &Certificate) -> bool {
        let hash = pool::summary_hash(summary);
        if summary.epoch != epoch
            || summary.region != self.config.region
            || certificate.epoch != epoch
            || certificate.region != self.config.region
            || certificate.summary != hash
        {
            return false;
        }
        let committee = self.committee(epoch).clone();
        if summary.committee_hash != committee.hash() {
            return false;
        }
        let (valid, checked) =
            crate::committee::valid_commit_signatures(&self.config.network, &committee, certificate, &hash);
        self.metrics.signatures_verified += checked as u64;
        valid > 2 * committee.len() / 3
    }

    fn answer(&self, request: &Request) -> Response {
        match request {
            Request::Reports { epoch, ids } => {
                // The epoch is where to look first; a transport that carries
                // ids only (the gossip fetch protocol) passes any epoch, and
                // every held epoch is searched.
                let first = self.epochs.get(epoch).into_iter();
                let others = self.epochs.iter().filter(|(e, _)| *e != epoch).map(|(_, s)| s);
                let states: Vec<&EpochState> = first.chain(others).collect();
                let list: Vec<Vec<u8>> = ids
                    .iter()
                    .take(codec::MAX_PROPOSAL_REPORTS)
                    .filter_map(|id| states.iter().find_map(|state| state.pool.get(id)))
                    .filter_map(|r| codec::encode_envelope(&r.envelope).ok())
                    .collect();
                Response::Reports(list)
            }
            Request::Decision { epoch } => match self.finalized.get(epoch) {
                Some(f) => Response::Decision {
                    summary: Box::new(f.summary.clone()),
                    certificate: Box::new(f.certificate.clone()),
                },
                None => Response::NotFound,
            },
        }
    }

    fn apply(&mut self, epoch: u64, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Schedule { round, step } => {
                    let t = &self.config.timeouts;
                    let base = match step {
                        TimeoutStep::Propose => t.propose_ms,
                        TimeoutStep::Prevote => t.prevote_ms,
                        TimeoutStep::Precommit => t.precommit_ms,
                    };
                    let at = self.now_ms + base + t.delta_ms * u64::from(round);
                    self.epochs.entry(epoch).or_default().deadlines.insert((round, step), at);
                }
                Action::Propose { round, valid_round, value } => {
                    self.propose(epoch, round, valid_round, value)
                }
                Action::Vote { round, step, value } => self.vote(epoch, round, step, value),
                Action::Decided { round, value } => self.decided(epoch, round, value),
            }
        }
    }

    fn propose(&mut self, epoch: u64, round: u32, valid_round: Option<u32>, value: Option<Hash32>) {
        let member = self.committee(epoch).index(&self.me);
        // Proposed in this round before a restart: the same proposal again.
        if let Some((hash, stored_vr, bytes)) =
            self.epochs.get(&epoch).and_then(|s| s.proposed.get(&round)).cloned()
        {
            self.push(Output::Publish { topic: Topic::Region(self.config.region), bytes });
            let mut actions = Vec::new();
            if let Some(member) = member {
                let instance = self.instance(epoch);
                instance.on_proposal(member, round, stored_vr, hash, &mut actions);
                instance.set_validity(hash, true, &mut actions);
            }
            self.apply(epoch, actions);
            return;
        }
        let Some(ctx) = self.context(epoch) else { return };
        let (summary, report_ids) =
            match value.and_then(|v| self.epochs.get(&epoch)?.proposals.get(&v).cloned()) {
                Some(p) => (p.summary, p.report_ids),
                None => {
                    let Some(state) = self.epochs.get(&epoch) else { return };
                    let ids = pool::select(&ctx, &state.pool);
                    let reports: Vec<&Report> = ids.iter().filter_map(|id| state.pool.get(id)).collect();
                    let Ok(summary) = pool::summarize(&ctx, &reports) else { return };
                    (summary, ids)
                }
            };
        let valid_round = if value.is_some() { valid_round } else { None };
        let hash = pool::summary_hash(&summary);
        let message = Message::Proposal(Proposal {
            round,
            valid_round,
            summary: summary.clone(),
            report_ids: report_ids.clone(),
        });
        let Ok(envelope) = Envelope::seal(&self.domain, &self.key, &message) else { return };
        let Ok(bytes) = codec::encode_envelope(&envelope) else { return };
        let me = self.me;
        let state = self.epochs.entry(epoch).or_default();
        if let Ok(id) = envelope.id() {
            state.seen.insert(id);
        }
        state.proposals.entry(hash).or_insert(Proposed { summary, report_ids, proposer: me });
        state.proposed.insert(round, (hash, valid_round, bytes.clone()));
        self.metrics.proposals_sent += 1;
        // Persisted before it is sent, like a vote: after a restart this
        // member proposes the same value in this round, never another.
        let id = self.id_next();
        self.push(Output::Persist { id, batch: vec![Record::Proposal(envelope)] });
        self.remember_sent(epoch, Some(id), &bytes);
        self.held.insert(id, vec![Output::Publish { topic: Topic::Region(self.config.region), bytes }]);
        let mut actions = Vec::new();
        if let Some(member) = member {
            let instance = self.instance(epoch);
            instance.on_proposal(member, round, valid_round, hash, &mut actions);
            instance.set_validity(hash, true, &mut actions);
        }
        self.apply(epoch, actions);
    }

    fn vote(&mut self, epoch: u64, round: u32, step: VoteStep, value: Option<Hash32>) {
        // Never sign a vote that conflicts with one signed before (restart included).
        match self.signed.get(&(epoch, round, step)) {
            Some(v) if *v != value => {
                self.metrics.conflicting_votes_refused += 1;
                return;
            }
            Some(_) => return,
            None => {}
        }
        let region = self.config.region;
        let commit_signature = match (step, value) {
            (VoteStep::Precommit, Some(v)) => {
                let sig =
                    self.key.sign(&Certificate::sign_bytes(&self.config.network, region, epoch, round, &v));
                self.epochs
                    .entry(epoch)
                    .or_default()
                    .commit_sigs
                    .entry((round, v))
                    .or_default()
                    .insert(self.me, sig);
                Some(sig)
            }
            _ => None,
        };
        let vote = Vote { region, epoch, round, step, value, commit_signature };
        let Ok(envelope) = Envelope::seal(&self.domain, &self.key, &Message::Vote(vote)) else { return };
        let Ok(bytes) = codec::encode_envelope(&envelope) else { return };
        if let Ok(id) = envelope.id() {
            self.epochs.entry(epoch).or_default().seen.insert(id);
        }
        self.signed.insert((epoch, round, step), value);
        self.metrics.votes_sent += 1;
        let id = self.id_next();
        self.push(Output::Persist { id, batch: vec![Record::Vote(envelope)] });
        self.remember_sent(epoch, Some(id), &bytes);
        self.held.insert(id, vec![Output::Publish { topic: Topic::Region(region), bytes }]);
    }

    /// Keeps an own message for rebroadcast; a vote only counts as sent
    /// once the persist `pending` is confirmed.
    fn remember_sent(&mut self, epoch: u64, pending: Option<u64>, bytes: &[u8]) {
        let state = self.epochs.entry(epoch).or_default();
        if state.sent.len() >= MAX_RESENT {
            state.sent.remove(0);
        }
        state.sent.push((pending, bytes.to_vec()));
    }

    fn decided(&mut self, epoch: u64, round: u32, value: Hash32) {
        let proposed = self.epochs.get(&epoch).and_then(|s| s.proposals.get(&value)).cloned();
        let Some(proposed) = proposed else {
            // Decided without the proposal: fetch the decision from a precommitter.
            let voters = self.instance(epoch).voters(round, VoteStep::Precommit, &value);
            if let Some(peer) = voters.first().and_then(|i| self.committee(epoch).members().get(*i)).copied()
            {
                self.catch_up_peer = Some(peer);
                self.max_seen_epoch = self.max_seen_epoch.max(epoch + 1);
                self.catch_up();
            }
            return;
        };
        let sigs = self
            .epochs
            .get(&epoch)
            .and_then(|s| s.commit_sigs.get(&(round, value)))
            .cloned()
            .unwrap_or_default();
        let certificate = Certificate {
            region: self.config.region,
            epoch,
            round,
            summary: value,
            signatures: sigs
                .into_iter()
                .map(|(signer, signature)| CommitSignature { signer, signature })
                .collect(),
        };
        let proposer_index = self.instance(epoch).proposer(round);
        let proposer = self.committee(epoch).members().get(proposer_index).copied();
        let settled = self.settled(epoch, &proposed);
        let summary = proposed.summary;
        if proposer == Some(self.me) {
            for message in [Message::EpochSummary(summary.clone()), Message::Certificate(certificate.clone())]
            {
                if let Ok(bytes) =
                    Envelope::seal(&self.domain, &self.key, &message).and_then(|e| codec::encode_envelope(&e))
                {
                    self.push(Output::Publish { topic: Topic::Global, bytes });
                }
            }
        }
        self.finalize(summary, certificate, settled);
    }

    /// The [`Record::Settled`] of a decided proposal whose reports the pool
    /// holds (it was judged valid, so they settle as its summary says).
    fn settled(&self, epoch: u64, proposed: &Proposed) -> Option<Record> {
        if self.finalized.contains_key(&epoch) {
            return None; // persisted with its summary before
        }
        let ctx = self.context(epoch)?;
        let state = self.epochs.get(&epoch)?;
        let reports: Option<Vec<&Report>> = proposed.report_ids.iter().map(|id| state.pool.get(id)).collect();
        let (rewards, energy) = pool::settle(&ctx, &reports?).ok()?;
        Some(Record::Settled { epoch, report_ids: proposed.report_ids.clone(), rewards, energy })
    }

    fn finalize(&mut self, summary: EpochSummary, certificate: Certificate, settled: Option<Record>) {
        let epoch = summary.epoch;
        if self.finalized.contains_key(&epoch) {
            return;
        }
        let hash = pool::summary_hash(&summary);
        let round = certificate.round;
        self.finalized
            .insert(epoch, Finalized { summary: summary.clone(), hash, certificate: certificate.clone() });
        self.metrics.finalized += 1;
        if let Some(state) = self.epochs.get_mut(&epoch) {
            state.deadlines.clear();
            state.stalled = None;
            state.poll_at = None;
        }
        let id = self.id_next();
        let mut batch = vec![Record::Finalized { summary, certificate }];
        batch.extend(settled);
        self.push(Output::Persist { id, batch });
        let mut after = vec![Output::Event(Event::Finalized { epoch, round, summary: hash })];
        if let Some(anchor) = self.anchor(epoch) {
            after.push(anchor);
        }
        self.held.insert(id, after);
        // The next epoch may have been waiting for this one.
        for next in self.deciding_epochs() {
            self.start_deciding(next);
        }
    }

    fn anchor(&mut self, epoch: u64) -> Option<Output> {
        let a = self.config.anchor_every;
        if a == 0 {
            return None;
        }
        let first = epoch - epoch % a;
        let last = first + a - 1;
        if self.anchored.contains(&first) {
            return None;
        }
        // The anchored tree holds one leaf per finalized summary; this node
        // knows its region's (the other regions' arrive on the global topic:
        // not collected yet).
        let leaves: Option<Vec<Hash32>> = (first..=last)
            .map(|e| self.finalized.get(&e).map(|f| summary_leaf(&f.summary, &f.hash)))
            .collect();
        let leaves = leaves?;
        self.anchored.insert(first);
        let root = anchor_root(&leaves);
        let digest = self.config.anchor_domain.anchor_digest(EpochRange { from: first, to: last }, &root);
        Some(Output::SignAnchor { first, last, root, digest })
    }

    fn prune(&mut self) {
        while self.finalized.len() > KEEP_FINALIZED {
            self.finalized.pop_first();
        }
        let Ok(current) = self.config.clock.epoch_at(self.now_ms) else { return };
        let low = self.finalized.keys().next_back().map_or(self.config.first_epoch, |e| e + 1);
        // Keep the epochs still being decided, the one before (late fetches)
        // and the open ones; drop the rest.
        let keep_from = low.saturating_sub(1).min(current.saturating_sub(1));
        self.epochs.retain(|e, _| *e >= keep_from);
        for state in self.epochs.values_mut() {
            if let Some(i) = state.instance.as_mut() {
                i.prune();
            }
        }
        // The registry in effect at `keep_from` and the later ones.
        if let Some(base) = self.registries.range(..=keep_from).next_back().map(|(k, _)| *k) {
            self.registries.retain(|k, _| *k >= base);
        }
        let signed_from = keep_from;
        self.signed.retain(|(e, _, _), _| *e >= signed_from);
        let _ = Step::Propose;
    }
}
