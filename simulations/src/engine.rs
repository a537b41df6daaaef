//! Deterministic mode: every committee region is a shard of real
//! [`meshd_node::Node`]s in virtual time. An event queue ordered by
//! (time, sequence) jumps to the next event; the network, the radio and the
//! adversaries are functions of the seed.
//!
//! Regions are independent (a region's gossip topic, committee and reports
//! are its own), so shards run on worker threads and their results are
//! combined in region order: the digest does not depend on the threads.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::rc::Rc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use meshd_node::committee::{Committee, anchor_root};
use meshd_node::pool::{self, Context, Limits, Pool};
use meshd_node::sim::Rng;
use meshd_node::{
    Config, Event, FetchError, Heard, Input, Node, Output, Radio, Record, Request, Response, Stored,
    Timeouts, Topic,
};
use meshd_protocol::anchor::AnchorDomain;
use meshd_protocol::envelope::{Domain, Envelope};
use meshd_protocol::epoch::EpochClock;
use meshd_protocol::geo::Region;
use meshd_protocol::keys::{EvmAddress, Keypair};
use meshd_protocol::merkle::summary_leaf;
use meshd_protocol::message::{
    BeaconId, BeaconReport, Certificate, DataRate, EpochSummary, Message, Vote, VoteStep, WitnessReport,
};
use meshd_protocol::reward::{RewardParams, RewardTally};
use meshd_protocol::rules::witness;
use meshd_protocol::signature;
use meshd_protocol::{GatewayId, Hash32, codec, keccak256};

use crate::meter::MeterModel;
use crate::scenario::Scenario;
use crate::stats::Histogram;
use crate::world::{Role, World, derived, unit};

/// Virtual genesis, Unix ms: a fixed moment so runs are reproducible.
pub const GENESIS_MS: u64 = 1_700_000_000_000;
/// Network name (the signing domain) of simulated gateways.
pub const NETWORK: &str = "meshd-sim";
/// Time on air of a 16-byte beacon at SF7/125 kHz, ms (Semtech's formula:
/// 41 ms); receptions are stamped this long after transmission.
pub const BEACON_AIRTIME_MS: u64 = 41;
/// Epochs of virtual time a shard keeps running after the last epoch's
/// decision time before giving up on finality: rounds back off, so two
/// epochs leave room for many.
pub const DEADLINE_EPOCHS: u64 = 2;
/// Events processed at one virtual moment before a shard is declared
/// spinning: a broadcast in a region of a few hundred nodes and its answers
/// are tens of thousands; millions are a loop.
pub const MAX_EVENTS_AT_ONE_MOMENT: u64 = 5_000_000;
/// Delay from a meter interval's end to its reading reaching the gateway, ms:
/// a meter polled over Modbus or MQTT answers within a second.
pub const METER_DELAY_MS: u64 = 1_000;
/// Bytes of digest input buffered before they are folded into the hash.
const DIGEST_CHUNK: usize = 1 << 16;
/// Longest base latency of a link, ms: ten seconds is a link that works
/// only just; the log-normal tail beyond it is cut. Fits a `u16`.
const MAX_BASE_LATENCY_MS: u64 = 10_000;
/// Signature verdicts a shard remembers per generation (two are kept). Every
/// member of a region verifies each gossiped message; remembered, the curve
/// arithmetic is done once per message instead of once per member. A region
/// of a hundred gateways publishes a few thousand signed messages an epoch
/// (beacon and witness reports, votes), so two generations of this many span
/// the epoch a message is verified in, and the fetches of its decision,
/// at a few hundred bytes an entry (tens of MB per worker thread).
const REMEMBERED_VERDICTS: usize = 1 << 15;

/// Counters shared with the progress display.
#[derive(Debug, Default)]
pub struct Progress {
    /// Events processed so far, all shards.
    pub events: AtomicU64,
    /// Virtual ms simulated so far, summed over shards.
    pub virtual_ms: AtomicU64,
    /// Shards done.
    pub shards_done: AtomicUsize,
    /// Shards in the run.
    pub shards_total: AtomicUsize,
}

/// What one region's run produced.
#[derive(Clone, Debug)]
pub struct ShardResult {
    /// The region.
    pub region: Region,
    /// Gateways (global indexes) of the region.
    pub members: Vec<usize>,
    /// Digest of the shard's events.
    pub digest: Hash32,
    /// Events processed.
    pub events: u64,
    /// Per epoch: the summary the honest majority finalized.
    pub decided: BTreeMap<u64, Decided>,
    /// Per epoch: latency from decision time to finality, ms, one per honest node that finalized.
    pub finality_ms: BTreeMap<u64, Vec<u64>>,
    /// Per epoch: honest live nodes at the end.
    pub honest_nodes: usize,
    /// Two honest nodes finalized different summaries of an epoch.
    pub forks: Vec<String>,
    /// Gossip copies addressed to a node (report kinds, consensus, all).
    pub gossip_intended: u64,
    /// Gossip copies delivered to a live node.
    pub gossip_delivered: u64,
    /// Delivery latency of gossip copies, ms.
    pub gossip_latency: Histogram,
    /// Bytes sent per member (same order as `members`).
    pub sent_bytes: Vec<u64>,
    /// Bytes received per member.
    pub received_bytes: Vec<u64>,
    /// Global-topic bytes published (summaries, certificates): every node receives these.
    pub global_bytes: u64,
    /// Units earned per member from the decided summaries.
    pub units: Vec<u64>,
    /// Units the Sybil members would have earned without their forged reports.
    pub honest_units: Vec<u64>,
    /// Units earned by the forgers' witness reports.
    pub forged_units: u64,
    /// Forged witness reports published.
    pub forged_published: u64,
    /// Forgers' witness reports counted in a decided summary.
    pub forged_counted: u64,
    /// Sybils' forged (intra-ring) witness reports rewarded in a decided summary.
    pub sybil_forged_counted: u64,
    /// Sybils' forged (intra-ring) witness reports listed in a decided
    /// summary, rewarded or not: how many reached consensus.
    pub sybil_forged_listed: u64,
    /// Listed witness reports the cross-witness rule left unrewarded, forged ones.
    pub excluded_forged: u64,
    /// Listed witness reports the cross-witness rule left unrewarded, real
    /// receptions (every non-forged report, Sybils' real ones included).
    pub excluded_real: u64,
    /// Listed witness reports of real receptions (the denominator of `excluded_real`).
    pub listed_real: u64,
    /// Of those, how many claim more than free space.
    pub real_above_free_space: u64,
    /// Of those, how many are within `witness::OPEN_SITE_DDB` of free space (not above it).
    pub real_open_site: u64,
    /// Decided summaries whose reward root the simulator recomputed identically.
    pub rewards_root_matches: u64,
    /// Decided epochs whose summary equals the ground truth recomputed from every report published.
    pub truth_matches: u64,
    /// Decided epochs compared with the ground truth.
    pub truth_compared: u64,
    /// Anchors signed: (node, first, last, root).
    pub anchors: Vec<(usize, u64, u64, Hash32)>,
    /// Anchors whose root equals the root of the ground-truth summaries.
    pub anchors_match_truth: u64,
    /// Anchors whose root equals the root of the decided summaries.
    pub anchors_match_decided: u64,
    /// Beacons transmitted.
    pub beacons: u64,
    /// Receptions delivered to a gateway of the same region.
    pub heard: u64,
    /// Receptions by gateways of another region (their reports cannot count there).
    pub heard_elsewhere: u64,
    /// Node counters summed: refusals by reason.
    pub refused: BTreeMap<&'static str, u64>,
    /// Node counters summed: equivocations seen.
    pub equivocations_seen: u64,
    /// Meter readings handed to a live node.
    pub meter_readings_fed: u64,
    /// Readings the node attested.
    pub meter_attested: u64,
    /// Readings the node refused, by reason code.
    pub meter_refused: BTreeMap<&'static str, u64>,
    /// Per epoch: energy in the decided summary, Wh.
    pub energy_decided_wh: BTreeMap<u64, u64>,
    /// Crashes and churn departures.
    pub crashes: u64,
    /// Restarts.
    pub restarts: u64,
}

impl Default for ShardResult {
    fn default() -> Self {
        ShardResult {
            region: Region(0),
            members: Vec::new(),
            digest: Hash32::ZERO,
            events: 0,
            decided: BTreeMap::new(),
            finality_ms: BTreeMap::new(),
            honest_nodes: 0,
            forks: Vec::new(),
            gossip_intended: 0,
            gossip_delivered: 0,
            gossip_latency: Histogram::default(),
            sent_bytes: Vec::new(),
            received_bytes: Vec::new(),
            global_bytes: 0,
            units: Vec::new(),
            honest_units: Vec::new(),
            forged_units: 0,
            forged_published: 0,
            forged_counted: 0,
            sybil_forged_counted: 0,
            sybil_forged_listed: 0,
            excluded_forged: 0,
            excluded_real: 0,
            listed_real: 0,
            real_above_free_space: 0,
            real_open_site: 0,
            rewards_root_matches: 0,
            truth_matches: 0,
            truth_compared: 0,
            anchors: Vec::new(),
            anchors_match_truth: 0,
            anchors_match_decided: 0,
            beacons: 0,
            heard: 0,
            heard_elsewhere: 0,
            refused: BTreeMap::new(),
            equivocations_seen: 0,
            meter_readings_fed: 0,
            meter_attested: 0,
            meter_refused: BTreeMap::new(),
            energy_decided_wh: BTreeMap::new(),
            crashes: 0,
            restarts: 0,
        }
    }
}

/// A decided epoch of a region.
#[derive(Clone, Debug)]
pub struct Decided {
    /// The summary's hash.
    pub hash: Hash32,
    /// The summary, when a proposal carrying it was seen.
    pub summary: Option<EpochSummary>,
    /// The listed reports, when a proposal carrying it was seen.
    pub report_ids: Vec<Hash32>,
}

#[derive(Debug)]
enum Ev {
    Wake(u32),
    Gossip { to: u32, from: u32, sent_at: u64, bytes: Rc<Vec<u8>> },
    FetchRequest { to: u32, from: u32, incarnation: u64, fetch: u64, request: Request },
    FetchResponse { to: u32, incarnation: u64, fetch: u64, result: Result<Response, FetchError> },
    Persisted { node: u32, id: u64, incarnation: u64, batch: Vec<Record> },
    Heard { to: u32, heard: Heard },
    Forge { node: u32, report: Box<WitnessReport> },
    Spam { node: u32, epoch: u64, k: u32 },
    MeterTick,
    Crash(u32),
    Restart(u32),
}

impl Ev {
    fn tag(&self) -> (u8, u32) {
        match self {
            Ev::Wake(n) => (0, *n),
            Ev::Gossip { to, .. } => (1, *to),
            Ev::FetchRequest { to, .. } => (2, *to),
            Ev::FetchResponse { to, .. } => (3, *to),
            Ev::Persisted { node, .. } => (4, *node),
            Ev::Heard { to, .. } => (5, *to),
            Ev::Forge { node, .. } => (6, *node),
            Ev::Spam { node, .. } => (7, *node),
            Ev::Crash(n) => (8, *n),
            Ev::Restart(n) => (9, *n),
            Ev::MeterTick => (10, 0),
        }
    }
}

/// An event in a shard's queue, which pops the earliest `(at, seq)` first;
/// sequence numbers are unique, so the order is total.
#[derive(Debug)]
struct Queued {
    at: u64,
    seq: u64,
    ev: Ev,
}

impl Queued {
    fn key(&self) -> Reverse<(u64, u64)> {
        Reverse((self.at, self.seq))
    }
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

struct Slot {
    global: usize,
    node: Option<Node>,
    key: Keypair,
    id: GatewayId,
    config: Config,
    role: Role,
    store: Vec<Record>,
    incarnation: u64,
    wake_at: u64,
    uplink_free_at: u64,
    sent: u64,
    received: u64,
    finalized: BTreeMap<u64, Hash32>,
}

/// A report published into the region, for the ground truth and rewards.
struct Published {
    at: u64,
    envelope: Envelope,
    signer: GatewayId,
    body: Message,
    forged: bool,
}

struct Shard<'w> {
    scenario: &'w Scenario,
    world: &'w World,
    region: Region,
    slots: Vec<Slot>,
    local: BTreeMap<usize, u32>,
    registry: Vec<GatewayId>,
    queue: BinaryHeap<Queued>,
    seq: u64,
    now: u64,
    rng: Rng,
    requests: BTreeMap<u64, (u32, u64, u64)>,
    digest_buf: Vec<u8>,
    digest: Hash32,
    clock: EpochClock,
    domain: Domain,
    minority: Vec<BTreeSet<u32>>,
    published: Vec<Published>,
    published_ids: BTreeSet<Hash32>,
    proposals: BTreeMap<Hash32, (EpochSummary, Vec<Hash32>)>,
    result: ShardResult,
    honest_finalized: usize,
    honest_target: usize,
    meters: MeterModel,
    meter_ids: u64,
    deadline: u64,
    last_progress: u64,
    /// Base latency per ordered pair of members (`a * n + b`), ms, drawn on
    /// first use; 0 until then (a base is at least 1 ms).
    link_ms: Vec<u16>,
}

/// The node configuration of a simulated gateway.
pub fn node_config(
    s: &Scenario,
    clock: EpochClock,
    region: Region,
    location: meshd_protocol::geo::Location,
) -> Config {
    let r = &s.radio;
    Config {
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
            antenna_gain_ddbi: (r.antenna_gain_dbi * 10.0).round() as i16,
            tx_power_ddbm: (r.tx_power_dbm * 10.0).round() as i16,
            frequency_hz: r.frequency_hz,
            datarate: DataRate { spreading_factor: r.spreading_factor, bandwidth_khz: 125 },
        },
        anchor_every: s.anchor_every,
        anchor_domain: AnchorDomain { chain_id: 31337, verifying_contract: EvmAddress([0xAA; 20]) },
        meter: meshd_protocol::rules::meter::Params::default(),
        stall_rounds: 4,
    }
}

/// The epoch clock of a scenario.
pub fn clock(s: &Scenario) -> Option<EpochClock> {
    EpochClock::new(GENESIS_MS, s.epoch_ms, s.grace_ms).ok()
}

/// Runs every region of the world on `threads` worker threads; results in region order.
pub fn run(
    s: &Scenario,
    world: &World,
    clock: EpochClock,
    threads: usize,
    progress: &Progress,
) -> Vec<ShardResult> {
    let regions: Vec<(Region, Vec<usize>)> = world.regions.iter().map(|(r, m)| (*r, m.clone())).collect();
    // Largest regions first, so one big region does not start last.
    let mut order: Vec<usize> = (0..regions.len()).collect();
    order.sort_by_key(|i| Reverse(regions[*i].1.len()));
    progress.shards_total.store(regions.len(), Ordering::Relaxed);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<ShardResult>>> = Mutex::new(vec![None; regions.len()]);
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&i) = order.get(k) else { break };
                    let (region, members) = &regions[i];
                    // A memo per shard: the thread holds one region's messages at a time.
                    let _verdicts = signature::remember_verdicts(REMEMBERED_VERDICTS);
                    let result = Shard::new(s, world, clock, *region, members).run(progress);
                    progress.shards_done.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut all) = results.lock() {
                        all[i] = Some(result);
                    }
                }
            });
        }
    });
    results.into_inner().unwrap_or_default().into_iter().flatten().collect()
}

impl<'w> Shard<'w> {
    fn new(
        s: &'w Scenario,
        world: &'w World,
        clock: EpochClock,
        region: Region,
        members: &[usize],
    ) -> Shard<'w> {
        let registry: Vec<GatewayId> = members.iter().map(|g| world.gateways[*g].id).collect();
        let mut local = BTreeMap::new();
        let slots: Vec<Slot> = members
            .iter()
            .enumerate()
            .map(|(k, &g)| {
                local.insert(g, k as u32);
                let gw = &world.gateways[g];
                Slot {
                    global: g,
                    node: None,
                    key: Keypair::from_secret(gw.secret),
                    id: gw.id,
                    config: node_config(s, clock, region, gw.location),
                    role: gw.role,
                    store: Vec::new(),
                    incarnation: 0,
                    wake_at: u64::MAX,
                    uplink_free_at: 0,
                    sent: 0,
                    received: 0,
                    finalized: BTreeMap::new(),
                }
            })
            .collect();
        let n = slots.len();
        let mut rng = derived(s.seed, b"shard", region.0);
        let minority = s
            .faults
            .partitions
            .iter()
            .map(|p| {
                let mut order: Vec<u32> = (0..n as u32).collect();
                for i in (1..n).rev() {
                    let j = (rng.next_u64() % (i as u64 + 1)) as usize;
                    order.swap(i, j);
                }
                let k = (p.fraction * n as f64).ceil() as usize;
                order.into_iter().take(k).collect()
            })
            .collect();
        let deadline = clock.decides_at_ms(s.epochs - 1 + DEADLINE_EPOCHS).unwrap_or(u64::MAX);
        let honest = slots.iter().filter(|sl| sl.role == Role::Honest).count();
        let meters = MeterModel::of_gateways(s, |g| local.contains_key(&g));
        let mut shard = Shard {
            scenario: s,
            world,
            region,
            slots,
            local,
            registry,
            queue: BinaryHeap::new(),
            seq: 0,
            now: GENESIS_MS,
            rng,
            requests: BTreeMap::new(),
            digest_buf: Vec::with_capacity(DIGEST_CHUNK + 1024),
            digest: Hash32::ZERO,
            clock,
            domain: Domain::new(NETWORK),
            minority,
            published: Vec::new(),
            published_ids: BTreeSet::new(),
            proposals: BTreeMap::new(),
            result: ShardResult {
                region,
                members: members.to_vec(),
                sent_bytes: vec![0; n],
                received_bytes: vec![0; n],
                ..ShardResult::default()
            },
            honest_finalized: 0,
            honest_target: honest * s.epochs as usize,
            meters,
            meter_ids: 0,
            deadline,
            last_progress: GENESIS_MS,
            link_ms: vec![0; n * n],
        };
        shard.schedule_faults();
        for i in 0..n as u32 {
            shard.boot(i);
        }
        shard
    }

    fn schedule_faults(&mut self) {
        let s = self.scenario;
        for c in &s.faults.crashes {
            if let Some(&i) = self.local.get(&c.gateway) {
                self.schedule(GENESIS_MS + c.at_ms, Ev::Crash(i));
                if let Some(r) = c.restart_ms {
                    self.schedule(GENESIS_MS + r, Ev::Restart(i));
                }
            }
        }
        if s.faults.churn_per_epoch > 0.0 {
            let down = if s.faults.churn_down_ms > 0 { s.faults.churn_down_ms } else { s.epoch_ms };
            let mut rng = derived(s.seed, b"churn", self.region.0);
            for e in 1..s.epochs {
                let start = self.clock.start_ms(e).unwrap_or(GENESIS_MS);
                for i in 0..self.slots.len() as u32 {
                    if unit(&mut rng) < s.faults.churn_per_epoch {
                        let at = start + rng.next_u64() % s.epoch_ms;
                        self.schedule(at, Ev::Crash(i));
                        self.schedule(at + down, Ev::Restart(i));
                    }
                }
            }
        }
        if !self.meters.is_empty() {
            let interval = s.meters.interval_s * 1000;
            let end = self.clock.start_ms(s.epochs).unwrap_or(GENESIS_MS);
            let mut t = GENESIS_MS + interval;
            while t <= end {
                // The reading reaches the gateway a moment after the interval closes.
                self.schedule(t + METER_DELAY_MS, Ev::MeterTick);
                t += interval;
            }
        }
        if s.adversaries.spammers > 0 && s.adversaries.spam_per_epoch > 0 {
            let spam = s.adversaries.spam_per_epoch as u64;
            for i in 0..self.slots.len() as u32 {
                if self.slots[i as usize].role != Role::Spammer {
                    continue;
                }
                for e in 0..s.epochs {
                    let start = self.clock.start_ms(e).unwrap_or(GENESIS_MS);
                    // Spread over the epoch, one batch per second.
                    let per_second = spam.div_ceil(s.epoch_ms / 1000).max(1);
                    let batches = spam.div_ceil(per_second);
                    for b in 0..batches {
                        let at = start + 500 + b * 1000;
                        let k = per_second.min(spam - b * per_second) as u32;
                        self.schedule(at, Ev::Spam { node: i, epoch: e, k });
                    }
                }
            }
        }
    }

    fn boot(&mut self, i: u32) {
        let slot = &mut self.slots[i as usize];
        let stored = Stored { records: slot.store.clone() };
        let node = Node::new(slot.config.clone(), slot.key.clone(), self.registry.clone(), stored, self.now);
        slot.node = Some(node);
        slot.wake_at = u64::MAX;
        self.drive(i, Input::Timeout { now_ms: self.now });
    }

    fn schedule(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Queued { at, seq: self.seq, ev });
    }

    fn alive(&self, i: u32) -> bool {
        self.slots[i as usize].node.is_some()
    }

    fn connected(&self, a: u32, b: u32) -> bool {
        let t = self.now - GENESIS_MS;
        !self.scenario.faults.partitions.iter().zip(&self.minority).any(|(p, minority)| {
            (p.from_ms..p.until_ms).contains(&t) && minority.contains(&a) != minority.contains(&b)
        })
    }

    /// One-way latency of a link: a log-normal base per (ordered) link from
    /// the seed, plus uniform jitter per message.
    fn latency(&mut self, a: u32, b: u32) -> u64 {
        let n = &self.scenario.network;
        let pair = a as usize * self.slots.len() + b as usize;
        let mut base = self.link_ms[pair];
        if base == 0 {
            let ga = self.slots[a as usize].global as u64;
            let gb = self.slots[b as usize].global as u64;
            let mut link = derived(self.scenario.seed, b"link", ga << 32 | gb);
            let drawn = n.latency_median_ms * (n.latency_sigma * crate::world::normal(&mut link)).exp();
            base = (drawn.round() as u64).clamp(1, MAX_BASE_LATENCY_MS) as u16;
            self.link_ms[pair] = base;
        }
        let jitter = if n.jitter_ms > 0 { self.rng.next_u64() % (n.jitter_ms + 1) } else { 0 };
        u64::from(base) + jitter
    }

    /// When a copy of `size` bytes sent now by `from` leaves its uplink.
    fn uplink(&mut self, from: u32, size: usize) -> u64 {
        let kbps = self.scenario.network.bandwidth_kbps.max(1);
        let slot = &mut self.slots[from as usize];
        let start = slot.uplink_free_at.max(self.now);
        // kbit/s is bits per ms.
        let busy = (size as u64 * 8).div_ceil(kbps);
        slot.uplink_free_at = start + busy;
        slot.sent += size as u64;
        start + busy
    }

    fn digest_bytes(&mut self, bytes: &[u8]) {
        self.digest_buf.extend_from_slice(bytes);
        if self.digest_buf.len() > DIGEST_CHUNK {
            self.fold_digest();
        }
    }

    fn fold_digest(&mut self) {
        let h = keccak256([&self.digest.0[..], &self.digest_buf[..]].concat());
        self.digest = h;
        self.digest_buf.clear();
    }

    fn run(mut self, progress: &Progress) -> ShardResult {
        let mut same_moment = 0u64;
        let mut events = 0u64;
        while let Some(Queued { at, ev, .. }) = self.queue.pop() {
            if at > self.deadline {
                break;
            }
            if at == self.now {
                same_moment += 1;
                if same_moment > MAX_EVENTS_AT_ONE_MOMENT {
                    self.result.forks.push(format!("seed {}: spinning at {at}", self.scenario.seed));
                    break;
                }
            } else {
                same_moment = 0;
            }
            self.now = self.now.max(at);
            let (tag, to) = ev.tag();
            let mut rec = [0u8; 13];
            rec[..8].copy_from_slice(&at.to_le_bytes());
            rec[8] = tag;
            rec[9..].copy_from_slice(&to.to_le_bytes());
            self.digest_bytes(&rec);
            self.event(ev);
            events += 1;
            if events.is_multiple_of(4096) {
                progress.events.fetch_add(4096, Ordering::Relaxed);
                let v = self.now - self.last_progress;
                progress.virtual_ms.fetch_add(v, Ordering::Relaxed);
                self.last_progress = self.now;
            }
            if self.honest_finalized >= self.honest_target && self.faults_over() {
                break;
            }
        }
        progress.events.fetch_add(events % 4096, Ordering::Relaxed);
        let end = self.deadline.max(self.last_progress);
        progress.virtual_ms.fetch_add(end - self.last_progress, Ordering::Relaxed);
        self.result.events = events;
        self.finish()
    }

    fn faults_over(&self) -> bool {
        let t = self.now - GENESIS_MS;
        let f = &self.scenario.faults;
        f.crashes.iter().all(|c| c.restart_ms.is_none_or(|r| r <= t))
            && f.partitions.iter().all(|p| p.until_ms <= t)
    }

    fn event(&mut self, ev: Ev) {
        match ev {
            Ev::Wake(i) => {
                if self.alive(i) && self.slots[i as usize].wake_at <= self.now {
                    self.slots[i as usize].wake_at = u64::MAX;
                    self.drive(i, Input::Timeout { now_ms: self.now });
                }
            }
            Ev::Gossip { to, from, sent_at, bytes } => {
                if !self.alive(to) {
                    return;
                }
                self.result.gossip_delivered += 1;
                self.result.gossip_latency.record(self.now - sent_at);
                self.slots[to as usize].received += bytes.len() as u64;
                self.react_to_gossip(to, &bytes);
                let from = self.slots[from as usize].id;
                let bytes = Rc::unwrap_or_clone(bytes);
                self.drive(to, Input::Gossip { now_ms: self.now, from, bytes });
            }
            Ev::FetchRequest { to, from, incarnation, fetch, request } => {
                if self.alive(to) {
                    self.seq += 1;
                    let rid = self.seq;
                    self.requests.insert(rid, (from, incarnation, fetch));
                    let asker = self.slots[from as usize].id;
                    self.drive(to, Input::FetchRequest { now_ms: self.now, id: rid, from: asker, request });
                } else {
                    let at = self.now + 2_000;
                    let result = Err(FetchError::Timeout);
                    self.schedule(at, Ev::FetchResponse { to: from, incarnation, fetch, result });
                }
            }
            Ev::FetchResponse { to, incarnation, fetch, result } => {
                if self.alive(to) && self.slots[to as usize].incarnation == incarnation {
                    self.drive(to, Input::FetchResponse { now_ms: self.now, id: fetch, result });
                }
            }
            Ev::Persisted { node, id, incarnation, batch } => {
                if self.slots[node as usize].incarnation != incarnation || !self.alive(node) {
                    return; // the write died with the process
                }
                // Settlements serve proofs and are never read back on
                // restart: a simulated store need not hold them.
                let kept = batch.into_iter().filter(|r| !matches!(r, Record::Settled { .. }));
                self.slots[node as usize].store.extend(kept);
                self.drive(node, Input::Persisted { now_ms: self.now, id });
            }
            Ev::Heard { to, heard } => {
                if self.alive(to) {
                    self.result.heard += 1;
                    self.drive(to, Input::BeaconHeard { now_ms: self.now, heard });
                }
            }
            Ev::Forge { node, report } => {
                if self.alive(node) {
                    let key = self.slots[node as usize].key.clone();
                    if let Some(bytes) = seal(&self.domain, &key, Message::WitnessReport(*report)) {
                        self.result.forged_published += 1;
                        self.adversary_publish(node, bytes, true);
                    }
                }
            }
            Ev::Spam { node, epoch, k } => {
                if self.alive(node) {
                    self.spam(node, epoch, k);
                }
            }
            Ev::MeterTick => {
                let capacity_w = self.scenario.meters.capacity_w;
                for reading in self.meters.readings(self.now - METER_DELAY_MS) {
                    let Some(&to) = self.local.get(&reading.gateway) else { continue };
                    if !self.alive(to) {
                        continue;
                    }
                    self.meter_ids += 1;
                    self.result.meter_readings_fed += 1;
                    let input = Input::MeterReading {
                        now_ms: self.now,
                        id: self.meter_ids,
                        reading: reading.envelope,
                        capacity_w,
                    };
                    self.drive(to, input);
                }
            }
            Ev::Crash(i) => {
                if self.alive(i) {
                    self.result.crashes += 1;
                }
                let slot = &mut self.slots[i as usize];
                slot.node = None;
                slot.incarnation += 1;
                slot.wake_at = u64::MAX;
            }
            Ev::Restart(i) => {
                if !self.alive(i) {
                    self.result.restarts += 1;
                    self.boot(i);
                }
            }
        }
    }

    /// Forgers and Sybils watch beacon reports and claim to have heard them.
    fn react_to_gossip(&mut self, to: u32, bytes: &[u8]) {
        let role = self.slots[to as usize].role;
        if !matches!(role, Role::ForgedWitness | Role::Sybil(_)) {
            return;
        }
        let Ok(envelope) = codec::decode_envelope(bytes) else { return };
        let Ok(Message::BeaconReport(b)) = envelope.open() else { return };
        let beaconer = GatewayId(envelope.signer);
        let me = &self.slots[to as usize];
        if beaconer == me.id {
            return;
        }
        let location = me.config.radio.location;
        let gain = me.config.radio.antenna_gain_ddbi;
        let rssi_ddbm = match role {
            Role::ForgedWitness => (self.scenario.adversaries.forged_rssi_dbm * 10.0).round() as i16,
            Role::Sybil(ring) => {
                // Only ring-mates, with an RSSI 3 dB under the free-space bound of the asserted distance.
                let mate = self.slots.iter().any(|s| s.id == beaconer && s.role == Role::Sybil(ring));
                if !mate {
                    return;
                }
                let Ok(d) = witness::distance_between(b.location, location) else { return };
                let bound = witness::max_rssi_ddbm(&b, gain, d, &witness::Params::default());
                (bound - 30).clamp(i64::from(witness::RSSI_MIN_DDBM), -300) as i16
            }
            _ => return,
        };
        let snr =
            ((f64::from(rssi_ddbm) / 10.0 - self.world.noise_floor_dbm).min(10.0) * 10.0).round() as i16;
        let report = WitnessReport {
            region: b.region,
            epoch: b.epoch,
            beacon_id: b.beacon_id,
            location,
            antenna_gain_ddbi: gain,
            rssi_ddbm,
            snr_ddb: snr.clamp(witness::SNR_MIN_DDB, witness::SNR_MAX_DDB),
            frequency_hz: b.frequency_hz,
            datarate: b.datarate,
            received_at_ms: b.transmitted_at_ms + BEACON_AIRTIME_MS,
            tmst_us: 0,
        };
        let at = self.now + 5;
        self.schedule(at, Ev::Forge { node: to, report: Box::new(report) });
    }

    fn spam(&mut self, node: u32, epoch: u64, k: u32) {
        let key = self.slots[node as usize].key.clone();
        let location = self.slots[node as usize].config.radio.location;
        for j in 0..k {
            let bytes = if j % 2 == 0 {
                // Junk that is not an envelope.
                let mut junk = vec![0u8; 120];
                for chunk in junk.chunks_mut(8) {
                    let w = self.rng.next_u64().to_le_bytes();
                    chunk.copy_from_slice(&w[..chunk.len()]);
                }
                junk
            } else {
                // A signed witness report of a beacon that never was.
                let mut id = [0u8; 16];
                id[..8].copy_from_slice(&self.rng.next_u64().to_le_bytes());
                id[8..].copy_from_slice(&self.rng.next_u64().to_le_bytes());
                let report = WitnessReport {
                    region: self.region,
                    epoch,
                    beacon_id: BeaconId(id),
                    location,
                    antenna_gain_ddbi: 30,
                    rssi_ddbm: -1000,
                    snr_ddb: 50,
                    frequency_hz: self.scenario.radio.frequency_hz,
                    datarate: DataRate {
                        spreading_factor: self.scenario.radio.spreading_factor,
                        bandwidth_khz: 125,
                    },
                    received_at_ms: self.now,
                    tmst_us: 0,
                };
                match seal(&self.domain, &key, Message::WitnessReport(report)) {
                    Some(b) => b,
                    None => continue,
                }
            };
            self.adversary_publish(node, bytes, false);
        }
    }

    /// Publishes bytes the harness crafted for an adversary: to its own node
    /// (as gossip looped back) and to the region.
    fn adversary_publish(&mut self, node: u32, bytes: Vec<u8>, forged: bool) {
        self.record_publish(&bytes, forged);
        let from = self.slots[node as usize].id;
        self.broadcast(node, Rc::new(bytes.clone()), |_| true);
        self.drive(node, Input::Gossip { now_ms: self.now, from, bytes });
    }

    fn drive(&mut self, i: u32, input: Input) {
        let Some(node) = self.slots[i as usize].node.as_mut() else { return };
        node.handle_input(input);
        let mut outputs = Vec::new();
        loop {
            match node.poll_output() {
                Output::Timeout(at) => {
                    let slot = &mut self.slots[i as usize];
                    if at != u64::MAX && at < slot.wake_at {
                        let at = at.max(self.now);
                        slot.wake_at = at;
                        self.schedule(at, Ev::Wake(i));
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

    fn output(&mut self, i: u32, out: Output) {
        match out {
            Output::Publish { topic: Topic::Global, bytes } => {
                // Every gateway of the network subscribes; no node collects
                // other regions' summaries yet, so the bytes are counted, not delivered.
                self.result.global_bytes += bytes.len() as u64;
                self.slots[i as usize].sent += bytes.len() as u64;
            }
            Output::Publish { topic: Topic::Region(_), bytes } => self.publish(i, bytes),
            Output::Fetch { id, peer, request } => {
                let incarnation = self.slots[i as usize].incarnation;
                let to = self.slots.iter().position(|s| s.id == peer).map(|p| p as u32);
                match to {
                    Some(to) if to != i && self.connected(i, to) => {
                        let at = self.uplink(i, 64) + self.latency(i, to);
                        self.schedule(at, Ev::FetchRequest { to, from: i, incarnation, fetch: id, request });
                    }
                    _ => {
                        let at = self.now + 2_000;
                        let result = Err(FetchError::Unreachable);
                        self.schedule(at, Ev::FetchResponse { to: i, incarnation, fetch: id, result });
                    }
                }
            }
            Output::Respond { id, response } => {
                let Some((asker, incarnation, fetch)) = self.requests.remove(&id) else { return };
                let size = match &response {
                    Response::Reports(list) => list.iter().map(Vec::len).sum::<usize>() + 8,
                    Response::Decision { certificate, .. } => 264 + 96 * certificate.signatures.len(),
                    Response::NotFound => 1,
                };
                let connected = self.connected(i, asker);
                let at = self.uplink(i, size) + self.latency(i, asker);
                self.slots[asker as usize].received += size as u64;
                let result = if connected { Ok(response) } else { Err(FetchError::Timeout) };
                self.schedule(at, Ev::FetchResponse { to: asker, incarnation, fetch, result });
            }
            Output::Persist { id, batch } => {
                let at = self.now + self.scenario.network.persist_ms;
                let incarnation = self.slots[i as usize].incarnation;
                self.schedule(at, Ev::Persisted { node: i, id, incarnation, batch });
            }
            Output::TransmitBeacon { beacon_id, .. } => self.transmit(i, beacon_id),
            Output::SignAnchor { first, last, root, .. } => {
                let global = self.slots[i as usize].global;
                self.result.anchors.push((global, first, last, root));
            }
            Output::Event(Event::Finalized { epoch, summary, .. }) => {
                self.digest_bytes(&summary.0);
                let slot = &mut self.slots[i as usize];
                if slot.finalized.insert(epoch, summary).is_none()
                    && slot.role == Role::Honest
                    && epoch < self.scenario.epochs
                {
                    self.honest_finalized += 1;
                    let decides = self.clock.decides_at_ms(epoch).unwrap_or(0);
                    self.result.finality_ms.entry(epoch).or_default().push(self.now.saturating_sub(decides));
                }
            }
            Output::MeterVerdict { result, .. } => match result {
                Ok(_) => self.result.meter_attested += 1,
                Err(reason) => *self.result.meter_refused.entry(reason.as_str()).or_default() += 1,
            },
            Output::Event(_) | Output::Timeout(_) => {}
        }
    }

    /// The radio: every gateway with a link to the beaconer draws its
    /// fading; those above the demodulation floor hear it with that RSSI
    /// and SNR, one time-on-air later.
    fn transmit(&mut self, i: u32, beacon_id: BeaconId) {
        self.result.beacons += 1;
        let global = self.slots[i as usize].global;
        let r = &self.scenario.radio;
        let floor = self.world.noise_floor_dbm;
        let threshold = floor + self.world.demod_snr_db;
        let mut heard = Vec::new();
        for link in &self.world.links[global] {
            let fading = r.fading_db * (2.0 * unit(&mut self.rng) - 1.0);
            let rssi = f64::from(link.mean_rssi_dbm) + fading;
            if rssi < threshold {
                continue;
            }
            match self.local.get(&(link.to as usize)) {
                Some(&to) => {
                    // LoRa's SNR estimate saturates around +10 dB.
                    let snr = (rssi - floor).min(10.0);
                    let heard_frame = Heard {
                        beacon_id,
                        rssi_ddbm: (rssi * 10.0).round().clamp(-1500.0, 0.0) as i16,
                        snr_ddb: (snr * 10.0).round().clamp(-300.0, 300.0) as i16,
                        frequency_hz: r.frequency_hz,
                        datarate: DataRate { spreading_factor: r.spreading_factor, bandwidth_khz: 125 },
                        tmst_us: ((self.now + BEACON_AIRTIME_MS) % (1 << 32) * 1000 % (1 << 32)) as u32,
                    };
                    heard.push((to, heard_frame));
                }
                None => self.result.heard_elsewhere += 1,
            }
        }
        for (to, frame) in heard {
            let at = self.now + BEACON_AIRTIME_MS;
            self.schedule(at, Ev::Heard { to, heard: frame });
        }
    }

    fn record_publish(&mut self, bytes: &[u8], forged: bool) -> Option<Message> {
        self.digest_bytes(bytes);
        let envelope = codec::decode_envelope(bytes).ok()?;
        let message = envelope.open().ok()?;
        match &message {
            Message::BeaconReport(_) | Message::WitnessReport(_) | Message::MeterAttestation(_) => {
                let id = envelope.id().ok()?;
                if self.published_ids.insert(id) {
                    let signer = GatewayId(envelope.signer);
                    let body = message.clone();
                    self.published.push(Published { at: self.now, envelope, signer, body, forged });
                }
            }
            Message::Proposal(p) => {
                let hash = pool::summary_hash(&p.summary);
                self.proposals.entry(hash).or_insert_with(|| (p.summary.clone(), p.report_ids.clone()));
            }
            _ => {}
        }
        Some(message)
    }

    fn publish(&mut self, i: u32, bytes: Vec<u8>) {
        let message = self.record_publish(&bytes, false);
        let role = self.slots[i as usize].role;
        match (role, message) {
            (Role::SilentLeader, Some(Message::Proposal(_))) => {}
            (Role::Equivocator, Some(Message::Vote(v))) => {
                let other = match v.value {
                    Some(_) => None,
                    None => Some(keccak256([&v.epoch.to_le_bytes()[..], b"equivocation"].concat())),
                };
                let key = self.slots[i as usize].key.clone();
                match seal_vote(&self.domain, &key, &v, other) {
                    Some(second) => {
                        self.broadcast(i, Rc::new(bytes), |to| to % 2 == 0);
                        self.broadcast(i, Rc::new(second), |to| to % 2 == 1);
                    }
                    None => self.broadcast(i, Rc::new(bytes), |_| true),
                }
            }
            _ => self.broadcast(i, Rc::new(bytes), |_| true),
        }
    }

    /// Sends a copy to every other member: each copy queues on the sender's
    /// uplink, then crosses its link (latency, loss, partitions).
    fn broadcast(&mut self, i: u32, bytes: Rc<Vec<u8>>, to: impl Fn(u32) -> bool) {
        let loss = self.scenario.network.loss;
        for j in 0..self.slots.len() as u32 {
            if j == i || !to(j) {
                continue;
            }
            self.result.gossip_intended += 1;
            let departs = self.uplink(i, bytes.len());
            if !self.connected(i, j) || (loss > 0.0 && unit(&mut self.rng) < loss) {
                continue;
            }
            let at = departs + self.latency(i, j);
            self.schedule(at, Ev::Gossip { to: j, from: i, sent_at: self.now, bytes: bytes.clone() });
        }
    }

    fn context(&self, epoch: u64, previous: Hash32) -> Context {
        Context {
            region: self.region,
            epoch,
            previous,
            committee_hash: Committee::new(self.registry.iter().copied(), &Hash32::ZERO).hash(),
            registry: self.registry.iter().copied().collect(),
            members: self.registry.len(),
            witness: witness::Params::default(),
            rewards: RewardParams::default(),
            limits: Limits::default(),
            clock: self.clock,
            meter: meshd_protocol::rules::meter::Params::default(),
        }
    }

    /// The decided values, rewards, ground truth and anchors.
    fn finish(mut self) -> ShardResult {
        self.fold_digest();
        self.result.digest = self.digest;
        let n = self.slots.len();
        let s = self.scenario;
        // Safety: honest nodes never finalize different summaries.
        let mut decided: BTreeMap<u64, BTreeMap<Hash32, usize>> = BTreeMap::new();
        for slot in &self.slots {
            if slot.role != Role::Honest && slot.role != Role::LocationLiar {
                continue;
            }
            for (e, h) in &slot.finalized {
                *decided.entry(*e).or_default().entry(*h).or_default() += 1;
            }
        }
        for (e, values) in &decided {
            if values.len() > 1 {
                self.result.forks.push(format!(
                    "region {:x} epoch {e}: {} different summaries",
                    self.region.0,
                    values.len()
                ));
            }
            let Some((hash, _)) = values.iter().max_by_key(|(_, c)| **c) else { continue };
            let (summary, report_ids) = match self.proposals.get(hash) {
                Some((summary, ids)) => (Some(summary.clone()), ids.clone()),
                None => (None, Vec::new()),
            };
            if let Some(sm) = &summary {
                self.result.energy_decided_wh.insert(*e, sm.energy_wh);
            }
            self.result.decided.insert(*e, Decided { hash: *hash, summary, report_ids });
        }
        self.result.honest_nodes =
            self.slots.iter().filter(|sl| sl.role == Role::Honest && sl.node.is_some()).count();
        for (k, slot) in self.slots.iter().enumerate() {
            self.result.sent_bytes[k] = slot.sent;
            self.result.received_bytes[k] = slot.received;
            if let Some(node) = &slot.node {
                let m = node.metrics();
                for (reason, count) in &m.refused {
                    *self.result.refused.entry(reason).or_default() += count;
                }
                self.result.equivocations_seen += m.equivocations;
            }
        }
        self.rewards(n);
        self.ground_truth(s);
        self.result
    }

    fn rewards(&mut self, n: usize) {
        let by_id: BTreeMap<Hash32, usize> = self
            .published
            .iter()
            .enumerate()
            .filter_map(|(k, p)| p.envelope.id().ok().map(|id| (id, k)))
            .collect();
        let index: BTreeMap<GatewayId, usize> =
            self.slots.iter().enumerate().map(|(k, s)| (s.id, k)).collect();
        let params = RewardParams::default();
        // The nodes' witness rules (the simulated network runs the defaults).
        let witness_params = witness::Params::default();
        let mut units = vec![0u64; n];
        let mut honest_units = vec![0u64; n];
        for d in self.result.decided.values() {
            let Some(summary) = &d.summary else { continue };
            let mut beacons: BTreeMap<BeaconId, (GatewayId, &BeaconReport)> = BTreeMap::new();
            let mut witnesses: BTreeMap<BeaconId, Vec<(GatewayId, bool, &WitnessReport)>> = BTreeMap::new();
            for id in &d.report_ids {
                let Some(&k) = by_id.get(id) else { continue };
                let p = &self.published[k];
                match &p.body {
                    Message::BeaconReport(b) => {
                        beacons.insert(b.beacon_id, (p.signer, b));
                    }
                    Message::WitnessReport(w) => {
                        witnesses.entry(w.beacon_id).or_default().push((p.signer, p.forged, w))
                    }
                    _ => {}
                }
            }
            let is_role = |g: &GatewayId, pred: &dyn Fn(Role) -> bool| {
                index.get(g).is_some_and(|k| pred(self.slots[*k].role))
            };
            let forger = |r: Role| r == Role::ForgedWitness;
            let sybil = |r: Role| matches!(r, Role::Sybil(_));
            let mut tally = RewardTally::new();
            let mut without_forged = RewardTally::new();
            for (beacon, (beaconer, b)) in &beacons {
                let ws = witnesses.get(beacon).cloned().unwrap_or_default();
                // The node's own cross-witness rule decides who is rewarded.
                let excess = |w: &WitnessReport| {
                    witness::distance_between(b.location, w.location)
                        .map_or(i64::MAX, |d| witness::excess_loss_ddb(b, w, d))
                };
                let listed = |w: &(GatewayId, bool, &WitnessReport)| pool::ListedWitness {
                    witness: w.0,
                    excess_loss_ddb: excess(w.2),
                    received_at_ms: w.2.received_at_ms,
                };
                let all: Vec<pool::ListedWitness> = ws.iter().map(listed).collect();
                let rewarded = pool::rewarded_witnesses(&all, &witness_params);
                tally.add_beacon(&params, beaconer, &rewarded);
                let paid = |g: &GatewayId| rewarded.binary_search(g).is_ok();
                // Exclusions by the cross-witness rule (not by the cap).
                let excess_all: Vec<i64> = all.iter().map(|l| l.excess_loss_ddb).collect();
                for ((_, f, _), verdict) in ws.iter().zip(witness::free_space_corroborated(&excess_all)) {
                    match (*f, verdict.is_ok()) {
                        (true, false) => self.result.excluded_forged += 1,
                        (false, false) => self.result.excluded_real += 1,
                        _ => {}
                    }
                }
                for x in all.iter().zip(&ws).filter(|(_, (_, f, _))| !*f).map(|(a, _)| &a.excess_loss_ddb) {
                    self.result.listed_real += 1;
                    self.result.real_above_free_space += u64::from(*x < witness::ABOVE_FREE_SPACE_DDB);
                    self.result.real_open_site +=
                        u64::from((witness::ABOVE_FREE_SPACE_DDB..witness::OPEN_SITE_DDB).contains(x));
                }
                // The forgers' reports (the Sybils' are judged by their ring's total).
                let forged = ws.iter().filter(|(g, f, _)| *f && is_role(g, &forger)).count() as u64;
                let forged_paid =
                    ws.iter().filter(|(g, f, _)| *f && paid(g) && is_role(g, &forger)).count() as u64;
                self.result.sybil_forged_listed +=
                    ws.iter().filter(|(g, f, _)| *f && is_role(g, &sybil)).count() as u64;
                self.result.sybil_forged_counted +=
                    ws.iter().filter(|(g, f, _)| *f && paid(g) && is_role(g, &sybil)).count() as u64;
                if forged > 0 {
                    let per = params.poc_units(rewarded.len() as u32).per_witness;
                    self.result.forged_counted += forged;
                    self.result.forged_units += forged_paid * per;
                }
                // Real coverage: the real receptions alone, under the same rule.
                let real: Vec<pool::ListedWitness> = ws.iter().filter(|(_, f, _)| !*f).map(listed).collect();
                without_forged.add_beacon(
                    &params,
                    beaconer,
                    &pool::rewarded_witnesses(&real, &witness_params),
                );
            }
            if tally.root() == summary.rewards_root {
                self.result.rewards_root_matches += 1;
            }
            for (g, u) in tally.iter() {
                if let Some(&k) = index.get(g) {
                    units[k] += *u;
                }
            }
            for (g, u) in without_forged.iter() {
                if let Some(&k) = index.get(g) {
                    honest_units[k] += *u;
                }
            }
        }
        self.result.units = units;
        self.result.honest_units = honest_units;
    }

    /// Recomputes each decided epoch from every report published in the
    /// region, as a node with a perfect network (each report arriving when
    /// sent) would; compares summaries and anchors.
    fn ground_truth(&mut self, s: &Scenario) {
        let mut truth: BTreeMap<u64, (EpochSummary, Hash32)> = BTreeMap::new();
        let mut previous = Hash32::ZERO;
        for e in 0..s.epochs {
            let ctx = self.context(e, previous);
            let mut pool = Pool::new();
            for p in &self.published {
                let epoch = match &p.body {
                    Message::BeaconReport(b) => b.epoch,
                    Message::WitnessReport(w) => w.epoch,
                    Message::MeterAttestation(a) => a.epoch,
                    _ => continue,
                };
                if epoch == e {
                    let _ = pool.offer(&self.domain, &ctx, &self.clock, p.at, p.envelope.clone());
                }
            }
            let ids = pool::select(&ctx, &pool);
            let reports: Vec<&pool::Report> = ids.iter().filter_map(|id| pool.get(id)).collect();
            let Ok(summary) = pool::summarize(&ctx, &reports) else { break };
            let hash = pool::summary_hash(&summary);
            if let Some(d) = self.result.decided.get(&e) {
                self.result.truth_compared += 1;
                if d.hash == hash {
                    self.result.truth_matches += 1;
                }
                // The chain goes on from what was decided, as the nodes' does.
                previous = d.hash;
            } else {
                previous = hash;
            }
            truth.insert(e, (summary, hash));
        }
        for (_, first, last, root) in &self.result.anchors {
            let leaves: Option<Vec<Hash32>> =
                (*first..=*last).map(|e| truth.get(&e).map(|(sm, h)| summary_leaf(sm, h))).collect();
            if leaves.is_some_and(|l| anchor_root(&l) == *root) {
                self.result.anchors_match_truth += 1;
            }
            let decided: Option<Vec<Hash32>> = (*first..=*last)
                .map(|e| {
                    self.result
                        .decided
                        .get(&e)
                        .and_then(|d| d.summary.as_ref().map(|sm| summary_leaf(sm, &d.hash)))
                })
                .collect();
            if decided.is_some_and(|l| anchor_root(&l) == *root) {
                self.result.anchors_match_decided += 1;
            }
        }
    }
}

fn seal(domain: &Domain, key: &Keypair, message: Message) -> Option<Vec<u8>> {
    Envelope::seal(domain, key, &message).ok().and_then(|e| codec::encode_envelope(&e).ok())
}

/// A vote like `v` for `value`, signed (with a commit signature when a
/// precommit for a value): the second half of an equivocation.
fn seal_vote(domain: &Domain, key: &Keypair, v: &Vote, value: Option<Hash32>) -> Option<Vec<u8>> {
    let commit_signature = match (v.step, value) {
        (VoteStep::Precommit, Some(h)) => {
            Some(key.sign(&Certificate::sign_bytes(NETWORK, v.region, v.epoch, v.round, &h)))
        }
        _ => None,
    };
    seal(domain, key, Message::Vote(Vote { value, commit_signature, ..v.clone() }))
}
