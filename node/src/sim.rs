//! A deterministic harness: N real [`Node`]s in virtual time on a seeded
//! network with latency, loss, partitions, crashes and restarts, Byzantine
//! members, registry changes (read by members at different moments) and
//! energy meters (one per node, with the attested energy kept as ground
//! truth in [`Outcome::attested`]). The idea of quinn's `Pair` for N nodes: an event queue
//! ordered by (time, sequence) jumps virtual time to the next event.
//!
//! Same [`Setup`] and seed, same run, bit for bit.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use meshd_protocol::codec;
use meshd_protocol::envelope::{Domain, Envelope};
use meshd_protocol::epoch::EpochClock;
use meshd_protocol::geo::{Location, Region};
use meshd_protocol::keys::Keypair;
use meshd_protocol::merkle::{MerkleTree, report_leaf};
use meshd_protocol::message::{
    BeaconId, Certificate, DataRate, EpochSummary, Message, MeterReading, MeterStatus, Proposal, Vote,
    VoteStep, WitnessReport,
};
use meshd_protocol::reward::RewardParams;
use meshd_protocol::rules::{meter, witness};
use meshd_protocol::{GatewayId, Hash32, keccak256};

use crate::node::{
    Config, Event, FetchError, Heard, Input, Node, Output, Radio, Record, Request, Response, Stored, Timeouts,
};
use crate::pool::Limits;
use meshd_protocol::anchor::AnchorDomain;
use meshd_protocol::keys::EvmAddress;

/// A small deterministic generator (SplitMix64): the harness's only randomness.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// True with probability `per_mille` / 1000.
    pub fn chance(&mut self, per_mille: u32) -> bool {
        self.next_u64() % 1000 < u64::from(per_mille)
    }
}

/// How a Byzantine member misbehaves (it runs the honest node and the
/// harness rewrites what it sends).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Byzantine {
    /// Sends its proposal to half the members and a different one (summary
    /// altered) to the other half.
    EquivocatingProposer,
    /// Sends each vote to half the members and a conflicting vote to the
    /// other half, both signed.
    DoubleVoter,
    /// Its proposals count a forged report nobody can produce and an invalid
    /// witness report it gossips.
    ForgingProposer,
}

/// A crash and, optionally, a restart from the stored state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crash {
    /// The node.
    pub node: usize,
    /// When it crashes, virtual ms after genesis.
    pub at_ms: u64,
    /// When it restarts, if it does.
    pub restart_ms: Option<u64>,
}

/// A partition: `minority` cannot talk to the others in `[from_ms, until_ms)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    /// The cut-off nodes.
    pub minority: Vec<usize>,
    /// Start, virtual ms after genesis.
    pub from_ms: u64,
    /// End (heal), virtual ms after genesis.
    pub until_ms: u64,
}

/// The chain's registry changes at `at_ms` (virtual ms after genesis) to
/// `members` (node indexes); even-numbered nodes hear of it then, odd ones
/// `odd_late_ms` later (chain reads are not simultaneous).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryChange {
    /// When, on chain.
    pub at_ms: u64,
    /// The registered nodes from then on.
    pub members: Vec<usize>,
    /// How much later the odd-numbered nodes read it, ms.
    pub odd_late_ms: u64,
}

/// What to simulate.
#[derive(Clone, Debug)]
pub struct Setup {
    /// Committee size.
    pub members: usize,
    /// The seed of everything random.
    pub seed: u64,
    /// Epochs to run (the run stops when every live honest node finalized them or time is up).
    pub epochs: u64,
    /// One-way latency bounds, ms.
    pub latency_ms: (u64, u64),
    /// Loss per message per recipient, per mille.
    pub loss_per_mille: u32,
    /// Time to make a batch durable, ms.
    pub persist_ms: u64,
    /// Byzantine members.
    pub byzantine: Vec<(usize, Byzantine)>,
    /// Crashes.
    pub crashes: Vec<Crash>,
    /// Partitions.
    pub partitions: Vec<Partition>,
    /// Crash this node right after its `k`-th vote became durable, before the
    /// vote is sent, and restart it 2 s later: (node, k).
    pub crash_after_vote_persist: Vec<(usize, u64)>,
    /// Nodes running but not in the registry at genesis (they may join by a
    /// [`RegistryChange`]).
    pub unregistered: Vec<usize>,
    /// Registry changes during the run.
    pub registry_changes: Vec<RegistryChange>,
    /// Every node has one energy meter that sends a reading this often, ms
    /// (a whole number of seconds); 0: no meters.
    pub meter_every_ms: u64,
}

impl Setup {
    /// `members` honest members, 20–80 ms latency, no loss, 3 epochs.
    pub fn honest(members: usize, seed: u64) -> Setup {
        Setup {
            members,
            seed,
            epochs: 3,
            latency_ms: (20, 80),
            loss_per_mille: 0,
            persist_ms: 2,
            byzantine: Vec::new(),
            crashes: Vec::new(),
            partitions: Vec::new(),
            crash_after_vote_persist: Vec::new(),
            unregistered: Vec::new(),
            registry_changes: Vec::new(),
            meter_every_ms: 0,
        }
    }
}

/// Epoch length of the simulation, ms: a minute keeps runs short while
/// leaving the beacon window and consensus rounds room.
pub const EPOCH_MS: u64 = 60_000;
/// Grace period, ms.
pub const GRACE_MS: u64 = 10_000;
/// Most events processed at one virtual moment before the run is declared
/// spinning: a broadcast to 128 members and their answers are a few
/// thousand; a million is a loop.
pub const MAX_EVENTS_AT_ONE_MOMENT: u64 = 1_000_000;
/// Virtual genesis, Unix ms (any fixed moment).
pub const GENESIS_MS: u64 = 1_700_000_000_000;
/// Network name of the simulation.
pub const NETWORK: &str = "meshd-sim";

/// What a run produced.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Per node, per epoch: the finalized summary hash and when (ms after the epoch's decision time).
    pub finalized: Vec<BTreeMap<u64, (Hash32, u64)>>,
    /// Every vote signed by an honest node and seen on the network or in its store.
    pub honest_votes: Vec<(GatewayId, u64, u32, VoteStep, Option<Hash32>)>,
    /// Messages published per node.
    pub published: Vec<u64>,
    /// Bytes published per node (gossip, counted once per publish) plus fetch responses sent.
    pub bytes: Vec<u64>,
    /// Bytes delivered to each node by gossip (every copy counted).
    pub received: Vec<u64>,
    /// Byzantine node indexes.
    pub byzantine: Vec<usize>,
    /// Digest of every event the harness processed, for determinism checks.
    pub digest: Hash32,
    /// Epochs run.
    pub epochs: u64,
    /// Each node's counters at the end (default for a node down at the end).
    pub metrics: Vec<crate::node::Metrics>,
    /// Each node's status of epochs `0..epochs` at the end (empty when down).
    pub status: Vec<Vec<crate::node::Status>>,
    /// Each node's finalized summaries held at the end (empty when down).
    pub summaries: Vec<BTreeMap<u64, EpochSummary>>,
    /// Ground truth of the meters: per epoch, the readings attested (an
    /// `Ok` verdict) and their credited Wh.
    pub attested: BTreeMap<u64, (u32, u64)>,
    /// A free-form description of the run, for failure messages.
    pub label: String,
    /// Settlements persisted with a finalized summary ([`Record::Settled`]).
    pub settled: u64,
    /// Settlements whose lists do not rebuild their summary's roots, named.
    pub unsettled: Vec<String>,
}

impl Outcome {
    /// Checks the safety properties; the error names the violation.
    pub fn check_safety(&self) -> Result<(), String> {
        let mut decided: BTreeMap<u64, Hash32> = BTreeMap::new();
        for (i, node) in self.finalized.iter().enumerate() {
            for (epoch, (hash, _)) in node {
                if let Some(other) = decided.insert(*epoch, *hash)
                    && other != *hash
                {
                    return Err(format!("epoch {epoch}: node {i} finalized {hash}, another {other}"));
                }
            }
        }
        if let Some(first) = self.unsettled.first() {
            return Err(first.clone());
        }
        let mut votes: BTreeMap<(GatewayId, u64, u32, VoteStep), Option<Hash32>> = BTreeMap::new();
        for (signer, epoch, round, step, value) in &self.honest_votes {
            if let Some(other) = votes.insert((*signer, *epoch, *round, *step), *value)
                && other != *value
            {
                return Err(format!(
                    "honest {signer} signed conflicting {step:?} in epoch {epoch} round {round}"
                ));
            }
        }
        Ok(())
    }

    /// Whether every honest node in `nodes` finalized epochs `0..epochs`.
    pub fn all_finalized(&self, nodes: impl IntoIterator<Item = usize>) -> bool {
        nodes.into_iter().all(|i| (0..self.epochs).all(|e| self.finalized[i].contains_key(&e)))
    }
}

#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)] // a test harness's event queue, not a hot path
enum Ev {
    Wake(usize),
    Gossip { to: usize, from: usize, bytes: Vec<u8> },
    FetchRequest { to: usize, from: usize, incarnation: u64, fetch: u64, request: Request },
    FetchResponse { to: usize, incarnation: u64, fetch: u64, result: Result<Response, FetchError> },
    Persisted { node: usize, id: u64, incarnation: u64, batch: Vec<Record> },
    Heard { to: usize, heard: HeardEv },
    Crash(usize),
    Restart(usize),
    Registry { members: Vec<usize>, as_of_ms: u64, odd: bool },
    Meter(usize),
}

/// Rated capacity of a simulated meter, W: a small rooftop array.
pub const METER_CAPACITY_W: u64 = 5_000;

#[derive(Clone, Debug, PartialEq, Eq)]
struct HeardEv {
    beacon_id: [u8; 16],
    rssi: i16,
}

struct Slot {
    node: Option<Node>,
    key_secret: [u8; 32],
    id: GatewayId,
    config: Config,
    store: Vec<Record>,
    incarnation: u64,
    wake_at: u64,
    votes_persisted: u64,
    byzantine: Option<Byzantine>,
    meter: SimMeter,
}

/// A simulated meter: its key, last reading, and readings awaiting a verdict
/// (reading id → attestation epoch, credited Wh).
struct SimMeter {
    key: Keypair,
    sequence: u64,
    end_s: u64,
    register_wh: u64,
    pending: BTreeMap<u64, (u64, u64)>,
}

/// The simulation.
pub struct Sim {
    setup: Setup,
    slots: Vec<Slot>,
    registry: Vec<GatewayId>,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: BTreeMap<u64, Ev>,
    seq: u64,
    now: u64,
    rng: Rng,
    /// Pending fetch requests: harness request id → (asker, its incarnation, its fetch id).
    requests: BTreeMap<u64, (usize, u64, u64)>,
    outcome: Outcome,
    digest: Vec<u8>,
    clock: EpochClock,
    /// Restarts scheduled by the persist-crash hook and not yet done.
    pending_restarts: usize,
}

fn secret(seed: u64, i: usize) -> [u8; 32] {
    keccak256([&seed.to_le_bytes()[..], &(i as u64).to_le_bytes()[..], b"sim-key"].concat()).0
}

/// One member of a simulated network.
#[derive(Clone, Debug)]
pub struct Member {
    /// The secret of its gateway key.
    pub key_secret: [u8; 32],
    /// Its gateway id.
    pub id: GatewayId,
    /// Its node configuration.
    pub config: Config,
}

/// The members of a simulated region: keys from the seed, locations on a
/// grid with 2 km spacing (far enough apart for the distance rules, close
/// enough to hear each other), one committee region.
pub fn network(members: usize, seed: u64) -> Vec<Member> {
    let clock = match EpochClock::new(GENESIS_MS, EPOCH_MS, GRACE_MS) {
        Ok(c) => c,
        Err(e) => panic!("the simulation's epoch constants are valid: {e}"),
    };
    let centre = (48.85_f64, 2.35_f64);
    let region = Location::from_lat_lng(centre.0, centre.1)
        .ok()
        .and_then(|l| Region::of(l, 5).ok())
        .unwrap_or(Region(0));
    let side = (members as f64).sqrt().ceil() as usize;
    (0..members)
        .map(|i| {
            let key_secret = secret(seed, i);
            let id = Keypair::from_secret(key_secret).gateway_id();
            let lat = centre.0 + 0.018 * (i / side) as f64;
            let lng = centre.1 + 0.027 * (i % side) as f64;
            let location = Location::from_lat_lng(lat, lng).unwrap_or(Location(0));
            let config = Config {
                network: NETWORK.into(),
                region,
                clock,
                first_epoch: 0,
                timeouts: Timeouts::default(),
                limits: Limits::default(),
                witness: witness::Params::default(),
                rewards: RewardParams::default(),
                radio: Radio {
                    location,
                    antenna_gain_ddbi: 30,
                    tx_power_ddbm: 140,
                    frequency_hz: 868_100_000,
                    datarate: DataRate { spreading_factor: 7, bandwidth_khz: 125 },
                },
                anchor_every: 2,
                anchor_domain: AnchorDomain { chain_id: 31337, verifying_contract: EvmAddress([0xAA; 20]) },
                meter: meter::Params::default(),
                stall_rounds: 4,
            };
            Member { key_secret, id, config }
        })
        .collect()
}

impl Sim {
    /// Builds the simulation (no event processed yet).
    pub fn new(setup: Setup) -> Sim {
        let clock = match EpochClock::new(GENESIS_MS, EPOCH_MS, GRACE_MS) {
            Ok(c) => c,
            Err(e) => panic!("the simulation's epoch constants are valid: {e}"),
        };
        let members = network(setup.members, setup.seed);
        let registry: Vec<GatewayId> = members
            .iter()
            .enumerate()
            .filter(|(i, _)| !setup.unregistered.contains(i))
            .map(|(_, m)| m.id)
            .collect();
        let mut slots = Vec::new();
        for (i, member) in members.into_iter().enumerate() {
            let Member { key_secret, id, config } = member;
            let byzantine = setup.byzantine.iter().find(|(n, _)| *n == i).map(|(_, b)| *b);
            slots.push(Slot {
                node: None,
                key_secret,
                id,
                config,
                store: Vec::new(),
                incarnation: 0,
                wake_at: u64::MAX,
                votes_persisted: 0,
                byzantine,
                meter: SimMeter {
                    key: Keypair::from_secret(
                        keccak256([&secret(setup.seed, i)[..], b"sim-meter"].concat()).0,
                    ),
                    sequence: 0,
                    end_s: GENESIS_MS / 1_000,
                    register_wh: 0,
                    pending: BTreeMap::new(),
                },
            });
        }
        let n = setup.members;
        let mut sim = Sim {
            rng: Rng::new(setup.seed),
            outcome: Outcome {
                finalized: vec![BTreeMap::new(); n],
                published: vec![0; n],
                bytes: vec![0; n],
                received: vec![0; n],
                byzantine: setup.byzantine.iter().map(|(i, _)| *i).collect(),
                epochs: setup.epochs,
                ..Outcome::default()
            },
            setup,
            slots,
            registry,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            seq: 0,
            now: GENESIS_MS,
            requests: BTreeMap::new(),
            digest: Vec::new(),
            clock,
            pending_restarts: 0,
        };
        for i in 0..n {
            sim.boot(i);
        }
        if sim.setup.meter_every_ms > 0 {
            for i in 0..n {
                sim.schedule(GENESIS_MS + sim.setup.meter_every_ms, Ev::Meter(i));
            }
        }
        for change in sim.setup.registry_changes.clone() {
            let as_of_ms = GENESIS_MS + change.at_ms;
            let members = change.members;
            sim.schedule(as_of_ms, Ev::Registry { members: members.clone(), as_of_ms, odd: false });
            sim.schedule(as_of_ms + change.odd_late_ms, Ev::Registry { members, as_of_ms, odd: true });
        }
        for c in sim.setup.crashes.clone() {
            sim.schedule(GENESIS_MS + c.at_ms, Ev::Crash(c.node));
            if let Some(r) = c.restart_ms {
                sim.schedule(GENESIS_MS + r, Ev::Restart(c.node));
            }
        }
        sim
    }

    fn boot(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        let stored = Stored { records: slot.store.clone() };
        let node = Node::new(
            slot.config.clone(),
            Keypair::from_secret(slot.key_secret),
            self.registry.clone(),
            stored,
            self.now,
        );
        slot.node = Some(node);
        slot.wake_at = u64::MAX;
        self.drive(i, Input::Timeout { now_ms: self.now });
    }

    fn schedule(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq)));
        self.events.insert(self.seq, ev);
    }

    fn connected(&self, a: usize, b: usize) -> bool {
        let t = self.now - GENESIS_MS;
        !self.setup.partitions.iter().any(|p| {
            (p.from_ms..p.until_ms).contains(&t) && (p.minority.contains(&a) != p.minority.contains(&b))
        })
    }

    fn latency(&mut self) -> u64 {
        let (lo, hi) = self.setup.latency_ms;
        self.rng.range(lo, hi)
    }

    fn alive(&self, i: usize) -> bool {
        self.slots[i].node.is_some()
    }

    /// Checks that a settlement persisted in `batch` rebuilds the roots of
    /// the summary beside it.
    fn check_settled(&mut self, node: usize, batch: &[Record]) {
        use meshd_protocol::merkle::{energy_leaf, reward_leaf};
        for record in batch {
            let Record::Settled { epoch, report_ids, rewards, energy } = record else { continue };
            self.outcome.settled += 1;
            let summary = batch.iter().find_map(|r| match r {
                Record::Finalized { summary, .. } if summary.epoch == *epoch => Some(summary),
                _ => None,
            });
            let rebuilt = summary.is_some_and(|s| {
                MerkleTree::new(report_ids.iter().map(report_leaf)).root() == s.reports_root
                    && MerkleTree::new(rewards.iter().map(|(g, u)| reward_leaf(g, *u))).root()
                        == s.rewards_root
                    && MerkleTree::new(energy.iter().map(|(m, wh)| energy_leaf(m, *wh))).root()
                        == s.energy_root
            });
            if !rebuilt {
                self.outcome.unsettled.push(format!(
                    "node {node} epoch {epoch}: its settlement does not rebuild its summary's roots"
                ));
            }
        }
    }

    /// Runs until every epoch of the setup is decided everywhere it can be,
    /// or the virtual deadline passes; returns the outcome.
    pub fn run(mut self) -> Outcome {
        let deadline = self.clock.decides_at_ms(self.setup.epochs + 2).unwrap_or(u64::MAX);
        let mut same_moment = 0u64;
        while let Some(Reverse((at, seq))) = self.queue.pop() {
            let Some(ev) = self.events.remove(&seq) else { continue };
            if at > deadline {
                break;
            }
            // A node that keeps asking to be woken at the same moment spins:
            // fail loudly rather than hang the run.
            if at == self.now {
                same_moment += 1;
                assert!(same_moment < MAX_EVENTS_AT_ONE_MOMENT, "seed {}: spinning at {at}", self.setup.seed);
            } else {
                same_moment = 0;
            }
            self.now = self.now.max(at);
            self.digest.extend_from_slice(&at.to_le_bytes());
            self.digest.extend_from_slice(format!("{ev:?}").len().to_le_bytes().as_slice());
            if self.digest.len() > 1 << 16 {
                let h = keccak256(&self.digest);
                self.digest = h.0.to_vec();
            }
            self.event(ev);
            let honest: Vec<usize> = (0..self.slots.len())
                .filter(|i| self.slots[*i].byzantine.is_none() && self.alive(*i))
                .collect();
            if self.pending_crashes_done() && self.outcome.all_finalized(honest) {
                break;
            }
        }
        for (i, slot) in self.slots.iter().enumerate() {
            if slot.byzantine.is_some() {
                continue;
            }
            for record in &slot.store {
                if let Record::Vote(envelope) = record
                    && let Ok(Message::Vote(v)) = envelope.open()
                {
                    self.outcome.honest_votes.push((self.slots[i].id, v.epoch, v.round, v.step, v.value));
                }
            }
        }
        for slot in &self.slots {
            self.outcome.metrics.push(slot.node.as_ref().map(|n| n.metrics().clone()).unwrap_or_default());
            self.outcome.status.push(
                slot.node
                    .as_ref()
                    .map(|n| (0..self.setup.epochs).map(|e| n.status(e)).collect())
                    .unwrap_or_default(),
            );
            self.outcome.summaries.push(
                slot.node
                    .as_ref()
                    .map(|n| {
                        n.finalized_epochs().filter_map(|e| Some((e, n.finalized(e)?.0.clone()))).collect()
                    })
                    .unwrap_or_default(),
            );
        }
        self.outcome.digest = keccak256(&self.digest);
        self.outcome
    }

    fn pending_crashes_done(&self) -> bool {
        let t = self.now - GENESIS_MS;
        self.pending_restarts == 0
            && self.setup.crashes.iter().all(|c| c.restart_ms.is_none_or(|r| r <= t))
            && self.setup.partitions.iter().all(|p| p.until_ms <= t)
    }

    fn event(&mut self, ev: Ev) {
        match ev {
            Ev::Wake(i) => {
                if self.alive(i) && self.slots[i].wake_at <= self.now {
                    self.slots[i].wake_at = u64::MAX;
                    self.drive(i, Input::Timeout { now_ms: self.now });
                }
            }
            Ev::Gossip { to, from, bytes } => {
                if self.alive(to) {
                    let from = self.slots[from].id;
                    self.drive(to, Input::Gossip { now_ms: self.now, from, bytes });
                }
            }
            Ev::FetchRequest { to, from, incarnation, fetch, request } => {
                if self.alive(to) {
                    self.seq += 1;
                    let rid = self.seq;
                    self.requests.insert(rid, (from, incarnation, fetch));
                    let asker = self.slots[from].id;
                    self.drive(to, Input::FetchRequest { now_ms: self.now, id: rid, from: asker, request });
                } else {
                    let at = self.now + 2 * self.setup.latency_ms.1;
                    let result = Err(FetchError::Timeout);
                    self.schedule(at, Ev::FetchResponse { to: from, incarnation, fetch, result });
                }
            }
            Ev::FetchResponse { to, incarnation, fetch, result } => {
                if self.alive(to) && self.slots[to].incarnation == incarnation {
                    self.drive(to, Input::FetchResponse { now_ms: self.now, id: fetch, result });
                }
            }
            Ev::Persisted { node, id, incarnation, batch } => {
                if self.slots[node].incarnation != incarnation || !self.alive(node) {
                    return; // the write died with the process
                }
                self.check_settled(node, &batch);
                let votes = batch.iter().filter(|r| matches!(r, Record::Vote(_))).count() as u64;
                // Settlements serve proofs and are never read back on
                // restart: a simulated store need not hold them.
                self.slots[node]
                    .store
                    .extend(batch.into_iter().filter(|r| !matches!(r, Record::Settled { .. })));
                if votes > 0 {
                    self.slots[node].votes_persisted += votes;
                    let k = self.slots[node].votes_persisted;
                    if self.setup.crash_after_vote_persist.iter().any(|(n, at)| *n == node && *at == k) {
                        self.crash(node);
                        let at = self.now + 2_000;
                        self.pending_restarts += 1;
                        self.schedule(at, Ev::Restart(node));
                        return;
                    }
                }
                self.drive(node, Input::Persisted { now_ms: self.now, id });
            }
            Ev::Heard { to, heard } => {
                if self.alive(to) {
                    let heard = Heard {
                        beacon_id: BeaconId(heard.beacon_id),
                        rssi_ddbm: heard.rssi,
                        snr_ddb: -50,
                        frequency_hz: 868_100_000,
                        datarate: DataRate { spreading_factor: 7, bandwidth_khz: 125 },
                        tmst_us: 0,
                    };
                    self.drive(to, Input::BeaconHeard { now_ms: self.now, heard });
                }
            }
            Ev::Registry { members, as_of_ms, odd } => {
                let members: Vec<GatewayId> =
                    members.iter().filter_map(|i| self.slots.get(*i)).map(|s| s.id).collect();
                self.registry = members.clone();
                for i in (0..self.slots.len()).filter(|i| (i % 2 == 1) == odd) {
                    let members = members.clone();
                    self.drive(i, Input::Registry { now_ms: self.now, as_of_ms, members });
                }
            }
            Ev::Meter(i) => {
                self.meter_reading(i);
                let at = self.now + self.setup.meter_every_ms;
                self.schedule(at, Ev::Meter(i));
            }
            Ev::Crash(i) => self.crash(i),
            Ev::Restart(i) => {
                self.pending_restarts = self.pending_restarts.saturating_sub(1);
                if !self.alive(i) {
                    self.boot(i);
                }
            }
        }
    }

    /// Node `i`'s meter sends its reading of the period that just ended:
    /// up to 90 % of its rated energy, a fault every tenth reading.
    fn meter_reading(&mut self, i: usize) {
        let end_s = self.now / 1_000;
        let interval_s = end_s.saturating_sub(self.slots[i].meter.end_s);
        let most = meter::max_energy_wh(METER_CAPACITY_W, interval_s, &self.slots[i].config.meter);
        let produced = self.rng.range(0, most * 9 / 10);
        let m = &mut self.slots[i].meter;
        m.sequence += 1;
        let reading = MeterReading {
            meter: m.key.meter_id(),
            sequence: m.sequence,
            interval_start_s: m.end_s,
            interval_end_s: end_s,
            register_start_wh: m.register_wh,
            register_end_wh: m.register_wh + produced,
            status: if m.sequence.is_multiple_of(10) { MeterStatus::Fault } else { MeterStatus::Ok },
        };
        m.end_s = end_s;
        m.register_wh += produced;
        let credited = meter::credited_wh(reading.status, produced);
        let epoch = crate::pool::attestation_epoch(&self.clock, &reading).unwrap_or(0);
        let Ok(envelope) = Envelope::seal(&Domain::new(NETWORK), &m.key, &Message::MeterReading(reading))
        else {
            return;
        };
        let id = m.sequence;
        m.pending.insert(id, (epoch, credited));
        let input =
            Input::MeterReading { now_ms: self.now, id, reading: envelope, capacity_w: METER_CAPACITY_W };
        self.drive(i, input);
    }

    fn crash(&mut self, i: usize) {
        self.slots[i].node = None;
        self.slots[i].incarnation += 1;
        self.slots[i].wake_at = u64::MAX;
    }

    fn drive(&mut self, i: usize, input: Input) {
        let Some(node) = self.slots[i].node.as_mut() else { return };
        node.handle_input(input);
        let mut outputs = Vec::new();
        loop {
            match node.poll_output() {
                Output::Timeout(at) => {
                    if at != u64::MAX && at < self.slots[i].wake_at {
                        self.slots[i].wake_at = at.max(self.now);
                        self.schedule(at.max(self.now), Ev::Wake(i));
                    }
                    break;
                }
                out => outputs.push(out),
            }
        }
        for out in outputs {
            self.output(i, out);
        }
    }

    fn output(&mut self, i: usize, out: Output) {
        match out {
            Output::Publish { bytes, .. } => self.publish(i, bytes),
            Output::Fetch { id, peer, request } => {
                let Some(to) = self.slots.iter().position(|s| s.id == peer) else { return };
                if self.connected(i, to) && to != i {
                    let at = self.now + self.latency();
                    let incarnation = self.slots[i].incarnation;
                    self.schedule(at, Ev::FetchRequest { to, from: i, incarnation, fetch: id, request });
                } else {
                    let at = self.now + 2 * self.setup.latency_ms.1;
                    let incarnation = self.slots[i].incarnation;
                    let result = Err(FetchError::Unreachable);
                    self.schedule(at, Ev::FetchResponse { to: i, incarnation, fetch: id, result });
                }
            }
            Output::Respond { id, response } => {
                let Some((asker, incarnation, fetch)) = self.requests.remove(&id) else { return };
                let size: usize = match &response {
                    Response::Reports(list) => list.iter().map(Vec::len).sum(),
                    Response::Decision { .. } => 204 + 60 + 96 * self.setup.members,
                    Response::NotFound => 1,
                };
                self.outcome.bytes[i] += size as u64;
                let at = self.now + self.latency();
                let result = if self.connected(i, asker) { Ok(response) } else { Err(FetchError::Timeout) };
                self.schedule(at, Ev::FetchResponse { to: asker, incarnation, fetch, result });
            }
            Output::Persist { id, batch } => {
                let at = self.now + self.setup.persist_ms;
                let incarnation = self.slots[i].incarnation;
                self.schedule(at, Ev::Persisted { node: i, id, incarnation, batch });
            }
            Output::TransmitBeacon { beacon_id, .. } => {
                // Radio: each other member hears with a probability giving
                // about four witnesses per beacon.
                let n = self.slots.len();
                let per_mille = (4_000 / (n.max(2) as u32 - 1)).min(1000);
                for to in 0..n {
                    if to != i && self.rng.chance(per_mille) {
                        let at = self.now + 1;
                        self.schedule(
                            at,
                            Ev::Heard { to, heard: HeardEv { beacon_id: beacon_id.0, rssi: -1100 } },
                        );
                    }
                }
            }
            Output::Event(Event::Finalized { epoch, summary, .. }) => {
                let decides = self.clock.decides_at_ms(epoch).unwrap_or(0);
                self.outcome.finalized[i].insert(epoch, (summary, self.now.saturating_sub(decides)));
            }
            Output::MeterVerdict { id, result } => {
                if let Some((epoch, wh)) = self.slots[i].meter.pending.remove(&id)
                    && result.is_ok()
                {
                    let entry = self.outcome.attested.entry(epoch).or_default();
                    entry.0 += 1;
                    entry.1 += wh;
                }
            }
            Output::Event(_) | Output::SignAnchor { .. } | Output::Timeout(_) => {}
        }
    }

    fn publish(&mut self, i: usize, bytes: Vec<u8>) {
        let n = self.slots.len();
        let byzantine = self.slots[i].byzantine;
        let key = Keypair::from_secret(self.slots[i].key_secret);
        let domain = Domain::new(NETWORK);
        let envelope = codec::decode_envelope(&bytes).ok();
        let message = envelope.as_ref().and_then(|e| e.open().ok());
        // Honest votes are recorded for the safety check.
        if byzantine.is_none()
            && let Some(Message::Vote(v)) = &message
        {
            self.outcome.honest_votes.push((self.slots[i].id, v.epoch, v.round, v.step, v.value));
        }
        let mut second: Option<Vec<u8>> = None;
        let mut first = bytes.clone();
        match (byzantine, message) {
            (Some(Byzantine::DoubleVoter), Some(Message::Vote(v))) => {
                let other = match v.value {
                    Some(_) => None,
                    None => Some(keccak256(v.epoch.to_le_bytes())),
                };
                second = seal_vote(&domain, &key, &v, other);
            }
            (Some(Byzantine::EquivocatingProposer), Some(Message::Proposal(p))) => {
                let mut q = p.clone();
                q.summary.reward_units = q.summary.reward_units.wrapping_add(1);
                second = seal(&domain, &key, Message::Proposal(q));
            }
            (Some(Byzantine::ForgingProposer), Some(Message::Proposal(p))) => {
                // An invalid witness report (RSSI out of range), gossiped, and a forged id.
                let w = WitnessReport {
                    region: p.summary.region,
                    epoch: p.summary.epoch,
                    beacon_id: BeaconId([0xEE; 16]),
                    location: self.slots[i].config.radio.location,
                    antenna_gain_ddbi: 30,
                    rssi_ddbm: i16::MAX,
                    snr_ddb: 0,
                    frequency_hz: 868_100_000,
                    datarate: DataRate { spreading_factor: 7, bandwidth_khz: 125 },
                    received_at_ms: self.now,
                    tmst_us: 0,
                };
                if let Some(report) = seal(&domain, &key, Message::WitnessReport(w)) {
                    if let Ok(e) = codec::decode_envelope(&report)
                        && let Ok(id) = e.id()
                    {
                        let mut q: Proposal = p.clone();
                        q.report_ids.push(id);
                        q.report_ids.push(Hash32([0xF0; 32]));
                        q.report_ids.sort();
                        q.summary.reports_root = MerkleTree::new(q.report_ids.iter().map(report_leaf)).root();
                        q.summary.witness_count += 2;
                        if let Some(b) = seal(&domain, &key, Message::Proposal(q)) {
                            first = b;
                        }
                    }
                    self.broadcast(i, &report, |_| true);
                }
            }
            _ => {}
        }
        match second {
            Some(other) => {
                self.broadcast(i, &first, |to| to % 2 == 0);
                self.broadcast(i, &other, |to| to % 2 == 1);
            }
            None => self.broadcast(i, &first, |_| true),
        }
        let _ = n;
    }

    fn broadcast(&mut self, i: usize, bytes: &[u8], to: impl Fn(usize) -> bool) {
        self.outcome.published[i] += 1;
        self.outcome.bytes[i] += bytes.len() as u64;
        for j in 0..self.slots.len() {
            if j == i || !to(j) || !self.connected(i, j) || self.rng.chance(self.setup.loss_per_mille) {
                continue;
            }
            let at = self.now + self.latency();
            self.outcome.received[j] += bytes.len() as u64;
            self.schedule(at, Ev::Gossip { to: j, from: i, bytes: bytes.to_vec() });
        }
    }
}

fn seal(domain: &Domain, key: &Keypair, message: Message) -> Option<Vec<u8>> {
    Envelope::seal(domain, key, &message).ok().and_then(|e| codec::encode_envelope(&e).ok())
}

fn seal_vote(domain: &Domain, key: &Keypair, v: &Vote, value: Option<Hash32>) -> Option<Vec<u8>> {
    let commit_signature = match (v.step, value) {
        (VoteStep::Precommit, Some(h)) => {
            Some(key.sign(&Certificate::sign_bytes(NETWORK, v.region, v.epoch, v.round, &h)))
        }
        _ => None,
    };
    seal(domain, key, Message::Vote(Vote { value, commit_signature, ..v.clone() }))
}
