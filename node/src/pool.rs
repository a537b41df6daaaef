//! The report pool of one (region, epoch) and the summary it yields.
//!
//! [`Pool::offer`] admits gossiped reports: duplicates are dropped by message
//! id before any signature is checked, each signature is verified once, the
//! epoch's timing (grace period included) and the per-epoch and per-gateway
//! limits are enforced, and every refusal is counted under a reason code.
//!
//! [`select`] picks, deterministically, the reports a proposer counts, and
//! [`summarize`] recomputes an [`EpochSummary`] from a listed set of reports;
//! a member prevotes a proposal only if [`summarize`] over the listed reports
//! yields exactly the proposed summary. Both apply the same content rules, so
//! the result does not depend on when or from whom a report arrived.
//!
//! # Witness rewards
//!
//! A listed witness report that passes the per-report rules counts (in the
//! reports root and the witness count), but its reward is decided per beacon
//! over all of the beacon's witnesses: the cross-witness rule
//! [`witness::free_space_corroborated`] withholds it from witnesses claiming
//! a reception stronger than free space that fewer than two other witnesses
//! of the beacon corroborate (the signature of a Sybil ring forging each other's
//! beacons). Of the others, the [`witness::Params::max_rewarded_witnesses`]
//! earliest received are rewarded ([`witness::select`]). Proposer and members
//! apply both in [`summarize`] to the same listed set ([`rewarded_witnesses`]),
//! so they never make an honest proposal invalid.
//!
//! # Meter attestations
//!
//! A [`MeterAttestation`] is admitted when its gateway is registered, the
//! meter's signature over the reading inside it is valid, the reading's
//! interval is sane ([`meter::interval_sane`]) and the attestation names the
//! epoch of the interval's end ([`attestation_epoch`]). The rated capacity
//! and the meter's history are known to the attesting gateway only: it ran
//! the full [`meter::check`] before signing, and the other members trust its
//! signature for those rules. One epoch counts at most one attestation per
//! (meter, sequence) and never two of one meter whose intervals overlap (two
//! gateways attesting the same reading, or a meter double-reporting):
//! [`select`] keeps the first in id order, [`summarize`] refuses a listing
//! with both. The summary's energy root has one [`energy_leaf`] per meter
//! with the credited Wh of its counted attestations ([`meter::credited_wh`]).

use std::collections::{BTreeMap, BTreeSet};

use meshd_protocol::codec::{self, MAX_PROPOSAL_REPORTS};
use meshd_protocol::envelope::{Domain, Envelope};
use meshd_protocol::epoch::EpochClock;
use meshd_protocol::geo::Region;
use meshd_protocol::merkle::{MerkleTree, energy_leaf, report_leaf};
use meshd_protocol::message::{
    BeaconId, BeaconReport, EpochSummary, Message, MeterAttestation, MeterReading, WitnessReport,
};
use meshd_protocol::reward::{RewardParams, RewardTally};
use meshd_protocol::rules::{meter, witness};
use meshd_protocol::{GatewayId, Hash32, MeterId, beacon, signature};

/// Limits of a pool against spam.
///
/// Coverage reports (beacons and witnesses) and meter attestations have
/// separate shares, so that a witness-dense region never crowds out the
/// energy of its meters (or the reverse): of the [`Limits::per_epoch`]
/// reports a pool admits, at most [`Limits::attestations`] are attestations,
/// every committee member keeps room for its one beacon, and witnesses take
/// the rest ([`Limits::witness_room`]). Each gateway has a share of each kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most reports admitted per (region, epoch). Default and maximum
    /// [`MAX_PROPOSAL_REPORTS`]: a proposal must be able to list them all.
    pub per_epoch: usize,
    /// Most coverage reports (its beacon and its witnesses) admitted per
    /// signing gateway per epoch. Default 32: one beacon plus witnesses of up
    /// to 31 beacons, more than a gateway hears in an epoch of a small region;
    /// a spammer fills at most this share.
    pub per_gateway: usize,
    /// Most meter attestations admitted per (region, epoch). Default 120, a
    /// third of a proposal: 40 meters reading three times an epoch.
    pub attestations: usize,
    /// Most meter attestations admitted per signing gateway per epoch.
    /// Default 24: eight meters at one site reading three times an epoch; a
    /// gateway inventing meter keys fills at most this share.
    pub attestations_per_gateway: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_epoch: MAX_PROPOSAL_REPORTS,
            per_gateway: 32,
            attestations: 120,
            attestations_per_gateway: 24,
        }
    }
}

impl Limits {
    /// The per-epoch cap, never above what a proposal can list.
    pub fn epoch_cap(&self) -> usize {
        self.per_epoch.min(MAX_PROPOSAL_REPORTS)
    }

    /// The per-epoch cap of attestations.
    pub fn attestation_cap(&self) -> usize {
        self.attestations.min(self.epoch_cap())
    }

    /// Most witness reports admitted in an epoch decided by `members`
    /// members: what is left once the attestations' share and one beacon per
    /// member are set aside.
    pub fn witness_room(&self, members: usize) -> usize {
        self.epoch_cap().saturating_sub(self.attestation_cap()).saturating_sub(members)
    }
}

/// The kinds of report a pool takes, for the limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Beacon,
    Witness,
    Attestation,
}

impl Kind {
    fn of(body: &Message) -> Option<Kind> {
        match body {
            Message::BeaconReport(_) => Some(Kind::Beacon),
            Message::WitnessReport(_) => Some(Kind::Witness),
            Message::MeterAttestation(_) => Some(Kind::Attestation),
            _ => None,
        }
    }

    /// The per-gateway share this kind counts against.
    fn gateway_share(self, limits: &Limits) -> usize {
        match self {
            Kind::Beacon | Kind::Witness => limits.per_gateway,
            Kind::Attestation => limits.attestations_per_gateway,
        }
    }
}

/// Reports per gateway and kind class (coverage or energy).
#[derive(Clone, Debug, Default)]
struct Shares(BTreeMap<(GatewayId, bool), usize>);

impl Shares {
    fn key(signer: &GatewayId, kind: Kind) -> (GatewayId, bool) {
        (*signer, kind == Kind::Attestation)
    }

    fn get(&self, signer: &GatewayId, kind: Kind) -> usize {
        self.0.get(&Shares::key(signer, kind)).copied().unwrap_or(0)
    }

    fn full(&self, signer: &GatewayId, kind: Kind, limits: &Limits) -> bool {
        self.get(signer, kind) >= kind.gateway_share(limits)
    }

    fn add(&mut self, signer: &GatewayId, kind: Kind) -> usize {
        let n = self.0.entry(Shares::key(signer, kind)).or_default();
        *n += 1;
        *n
    }
}

/// The facts a summary of one (region, epoch) depends on.
#[derive(Clone, Debug)]
pub struct Context {
    /// The region.
    pub region: Region,
    /// The epoch.
    pub epoch: u64,
    /// Hash of the region's previous finalized summary: the beacons' entropy.
    pub previous: Hash32,
    /// Hash of the committee deciding the epoch.
    pub committee_hash: Hash32,
    /// The registered gateways (signers of admissible reports).
    pub registry: BTreeSet<GatewayId>,
    /// Members of the committee deciding the epoch: each has room for its
    /// beacon in the pool ([`Limits::witness_room`]).
    pub members: usize,
    /// Witness validity rules.
    pub witness: witness::Params,
    /// Reward formula.
    pub rewards: RewardParams,
    /// Spam limits.
    pub limits: Limits,
    /// The epoch schedule (an attestation's epoch is its interval end's).
    pub clock: EpochClock,
    /// Meter rules.
    pub meter: meter::Params,
}

/// Why a report is refused or does not count. The `as_str` codes are metric labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The bytes are not an envelope.
    Malformed,
    /// The message id was seen before (dropped before the signature check).
    Duplicate,
    /// The signature does not verify.
    BadSignature,
    /// Not a report kind the pool takes.
    WrongKind,
    /// The report names another region.
    WrongRegion,
    /// The report names an epoch other than the pool's.
    WrongEpoch,
    /// Before the epoch started.
    Early,
    /// After the epoch's grace period.
    TooLate,
    /// The signer is not a registered gateway.
    Unregistered,
    /// The pool is full for this epoch.
    EpochFull,
    /// The signer reached its share of the epoch.
    GatewayFull,
    /// A beacon whose id is not derived from the previous summary and the signer.
    BeaconNotDerived,
    /// A second beacon of the same gateway in the epoch.
    SecondBeacon,
    /// A witness of a beacon not among the counted reports.
    UnknownBeacon,
    /// A second witness of the same beacon by the same gateway.
    SecondWitness,
    /// A meter attestation whose reading fails a meter rule.
    Meter(meter::Reason),
    /// A meter attestation naming an epoch other than its interval end's.
    AttestationEpoch,
    /// A second attestation of a meter's reading, or one whose interval
    /// overlaps another counted attestation of the same meter.
    SecondAttestation,
    /// A listed report id is not sorted or listed twice.
    NotSorted,
    /// Too many reports listed.
    TooMany,
    /// A proposal from a member that is not the round's proposer.
    NotProposer,
    /// A witness rule refused it.
    Witness(witness::Reason),
}

impl Reason {
    /// A short code for logs and metric labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            Reason::Malformed => "malformed",
            Reason::Duplicate => "duplicate",
            Reason::BadSignature => "bad_signature",
            Reason::WrongKind => "wrong_kind",
            Reason::WrongRegion => "wrong_region",
            Reason::WrongEpoch => "wrong_epoch",
            Reason::Early => "early",
            Reason::TooLate => "too_late",
            Reason::Unregistered => "unregistered",
            Reason::EpochFull => "epoch_full",
            Reason::GatewayFull => "gateway_full",
            Reason::BeaconNotDerived => "beacon_not_derived",
            Reason::SecondBeacon => "second_beacon",
            Reason::UnknownBeacon => "unknown_beacon",
            Reason::SecondWitness => "second_witness",
            Reason::Meter(r) => r.as_str(),
            Reason::AttestationEpoch => "attestation_epoch",
            Reason::SecondAttestation => "second_attestation",
            Reason::NotSorted => "not_sorted",
            Reason::TooMany => "too_many",
            Reason::NotProposer => "not_proposer",
            Reason::Witness(r) => r.as_str(),
        }
    }
}

/// A report whose signature was verified, with its decoded body.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The message id.
    pub id: Hash32,
    /// The envelope as received.
    pub envelope: Envelope,
    /// The signer.
    pub signer: GatewayId,
    /// The decoded body.
    pub body: Message,
}

/// Decodes, checks and verifies one report envelope, with no timing or pool
/// state: what a member does with a report it fetched for a proposal.
pub fn verify_report(domain: &Domain, ctx: &Context, envelope: Envelope) -> Result<Report, Reason> {
    let id = envelope.id().map_err(|_| Reason::Malformed)?;
    signature::verify(domain, &envelope).map_err(|_| Reason::BadSignature)?;
    let body = envelope.open().map_err(|_| Reason::Malformed)?;
    let signer = GatewayId(envelope.signer);
    let (region, epoch) = match &body {
        Message::BeaconReport(b) => (b.region, b.epoch),
        Message::WitnessReport(w) => (w.region, w.epoch),
        Message::MeterAttestation(a) => (a.region, a.epoch),
        _ => return Err(Reason::WrongKind),
    };
    if region != ctx.region {
        return Err(Reason::WrongRegion);
    }
    if epoch != ctx.epoch {
        return Err(Reason::WrongEpoch);
    }
    if !ctx.registry.contains(&signer) {
        return Err(Reason::Unregistered);
    }
    if let Message::MeterAttestation(a) = &body {
        check_attestation(domain, ctx, a)?;
    }
    Ok(Report { id, envelope, signer, body })
}

/// The epoch a meter reading belongs to: the one holding the last instant of
/// its interval (the end is exclusive), so that a reading ending exactly on
/// an epoch boundary counts in the epoch it measured. `None` before genesis.
pub fn attestation_epoch(clock: &EpochClock, reading: &MeterReading) -> Option<u64> {
    clock.epoch_at(reading.interval_end_s.saturating_mul(1_000).saturating_sub(1)).ok()
}

/// The reading inside an attestation, or why it cannot be counted.
pub fn attested_reading(attestation: &MeterAttestation) -> Result<MeterReading, Reason> {
    match attestation.reading.open() {
        Ok(Message::MeterReading(r)) => Ok(r),
        _ => Err(Reason::Meter(meter::Reason::WrongEnvelope)),
    }
}

/// The rules every member checks of another gateway's attestation (see the
/// module docs).
fn check_attestation(domain: &Domain, ctx: &Context, a: &MeterAttestation) -> Result<(), Reason> {
    let reading = attested_reading(a)?;
    meter::signed_by_meter(domain, &a.reading, &reading).map_err(Reason::Meter)?;
    meter::interval_sane(&reading, &ctx.meter).map_err(Reason::Meter)?;
    if attestation_epoch(&ctx.clock, &reading) != Some(a.epoch) {
        return Err(Reason::AttestationEpoch);
    }
    Ok(())
}

/// The intervals of one meter counted so far: (sequence, start s, end s).
#[derive(Default)]
struct MeterIntervals(Vec<(u64, u64, u64)>);

impl MeterIntervals {
    /// Whether `r` repeats a counted sequence or overlaps a counted interval.
    fn conflicts(&self, r: &MeterReading) -> bool {
        self.0.iter().any(|(sequence, start, end)| {
            *sequence == r.sequence || (r.interval_start_s < *end && *start < r.interval_end_s)
        })
    }

    fn add(&mut self, r: &MeterReading) {
        self.0.push((r.sequence, r.interval_start_s, r.interval_end_s));
    }
}

/// The reports of one (region, epoch) this node admitted.
#[derive(Clone, Debug, Default)]
pub struct Pool {
    reports: BTreeMap<Hash32, Report>,
    /// Ids seen, admitted or not: duplicates are dropped before verifying.
    seen: BTreeSet<Hash32>,
    shares: Shares,
    witnesses: usize,
    attestations: usize,
}

/// Most ids a pool remembers as seen, admitted or refused. Four times the
/// admitted maximum: refused spam beyond it is re-verified, costing the
/// spammer one signature each, never memory.
pub const MAX_SEEN: usize = 4 * MAX_PROPOSAL_REPORTS;

impl Pool {
    /// An empty pool.
    pub fn new() -> Pool {
        Pool::default()
    }

    /// Whether a report of this id is held.
    pub fn contains(&self, id: &Hash32) -> bool {
        self.reports.contains_key(id)
    }

    /// A held report.
    pub fn get(&self, id: &Hash32) -> Option<&Report> {
        self.reports.get(id)
    }

    /// Number of held reports.
    pub fn len(&self) -> usize {
        self.reports.len()
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.reports.is_empty()
    }

    /// All held reports in id order.
    pub fn reports(&self) -> impl Iterator<Item = &Report> {
        self.reports.values()
    }

    /// Offers a gossiped report at `now_ms`; `Ok` with its id when admitted.
    pub fn offer(
        &mut self,
        domain: &Domain,
        ctx: &Context,
        clock: &EpochClock,
        now_ms: u64,
        envelope: Envelope,
    ) -> Result<Hash32, Reason> {
        let id = envelope.id().map_err(|_| Reason::Malformed)?;
        if self.seen.contains(&id) {
            return Err(Reason::Duplicate);
        }
        if self.seen.len() < MAX_SEEN {
            self.seen.insert(id);
        }
        match clock.timing(ctx.epoch, now_ms) {
            meshd_protocol::epoch::Timing::Early => return Err(Reason::Early),
            meshd_protocol::epoch::Timing::TooLate => return Err(Reason::TooLate),
            _ => {}
        }
        // The limits are checked on the envelope's kind, before the
        // signature, so that spam beyond them costs no verification.
        let kind = match envelope.kind {
            meshd_protocol::message::Kind::BeaconReport => Kind::Beacon,
            meshd_protocol::message::Kind::WitnessReport => Kind::Witness,
            meshd_protocol::message::Kind::MeterAttestation => Kind::Attestation,
            _ => return Err(Reason::WrongKind),
        };
        // Beacons are bounded by the epoch cap alone (one per member).
        let full = match kind {
            Kind::Beacon => false,
            Kind::Witness => self.witnesses >= ctx.limits.witness_room(ctx.members),
            Kind::Attestation => self.attestations >= ctx.limits.attestation_cap(),
        };
        if full || self.reports.len() >= ctx.limits.epoch_cap() {
            return Err(Reason::EpochFull);
        }
        if self.shares.full(&GatewayId(envelope.signer), kind, &ctx.limits) {
            return Err(Reason::GatewayFull);
        }
        let report = verify_report(domain, ctx, envelope)?;
        self.insert(report);
        Ok(id)
    }

    /// Adds a verified report (one fetched for a proposal), outside the limits.
    pub fn insert(&mut self, report: Report) {
        if self.reports.contains_key(&report.id) {
            return;
        }
        if let Some(kind) = Kind::of(&report.body) {
            self.shares.add(&report.signer, kind);
            match kind {
                Kind::Beacon => {}
                Kind::Witness => self.witnesses += 1,
                Kind::Attestation => self.attestations += 1,
            }
        }
        self.seen.insert(report.id);
        self.reports.insert(report.id, report);
    }
}

/// The counted reports of a listed set: beacons by id, witnesses per beacon
/// (each with its [`witness::excess_loss_ddb`], for the cross-witness rule).
struct Counted<'a> {
    beacons: BTreeMap<BeaconId, (&'a GatewayId, &'a BeaconReport)>,
    witnesses: BTreeMap<BeaconId, Vec<ListedWitness>>,
    /// Credited Wh per meter.
    energy: BTreeMap<MeterId, u64>,
    attestations: usize,
}

/// Applies the content rules to `reports` (in id order); returns the first
/// refusal, naming the report. Shared by [`select`] and [`summarize`].
fn count<'a>(ctx: &Context, reports: &[&'a Report]) -> Result<Counted<'a>, (Hash32, Reason)> {
    let mut beacons: BTreeMap<BeaconId, (&GatewayId, &BeaconReport)> = BTreeMap::new();
    let mut beaconers: BTreeSet<&GatewayId> = BTreeSet::new();
    let mut shares = Shares::default();
    let mut attestation_count = 0;
    for r in reports {
        // Admission checked the registry of the moment; the epoch's is what counts.
        if !ctx.registry.contains(&r.signer) {
            return Err((r.id, Reason::Unregistered));
        }
        let Some(kind) = Kind::of(&r.body) else { return Err((r.id, Reason::WrongKind)) };
        if shares.add(&r.signer, kind) > kind.gateway_share(&ctx.limits) {
            return Err((r.id, Reason::GatewayFull));
        }
        if kind == Kind::Attestation {
            attestation_count += 1;
            if attestation_count > ctx.limits.attestation_cap() {
                return Err((r.id, Reason::TooMany));
            }
        }
        if let Message::BeaconReport(b) = &r.body {
            if b.entropy != ctx.previous || !beacon::is_derived(b, &r.signer) {
                return Err((r.id, Reason::BeaconNotDerived));
            }
            if !beaconers.insert(&r.signer) {
                return Err((r.id, Reason::SecondBeacon));
            }
            if let Err(reason) = witness::beacon_plausible(b) {
                return Err((r.id, Reason::Witness(reason)));
            }
            beacons.insert(b.beacon_id, (&r.signer, b));
        }
    }
    let mut witnesses: BTreeMap<BeaconId, Vec<ListedWitness>> = BTreeMap::new();
    let mut intervals: BTreeMap<MeterId, MeterIntervals> = BTreeMap::new();
    let mut energy: BTreeMap<MeterId, u64> = BTreeMap::new();
    let mut attestations = 0;
    for r in reports {
        match &r.body {
            Message::BeaconReport(_) => {}
            Message::WitnessReport(w) => {
                let Some((beaconer, b)) = beacons.get(&w.beacon_id) else {
                    return Err((r.id, Reason::UnknownBeacon));
                };
                let distance = witness::check(b, w, beaconer, &r.signer, &ctx.witness)
                    .map_err(|reason| (r.id, Reason::Witness(reason)))?;
                let list = witnesses.entry(w.beacon_id).or_default();
                if list.iter().any(|l| l.witness == r.signer) {
                    return Err((r.id, Reason::SecondWitness));
                }
                list.push(ListedWitness {
                    witness: r.signer,
                    excess_loss_ddb: witness::excess_loss_ddb(b, w, distance),
                    received_at_ms: w.received_at_ms,
                });
            }
            Message::MeterAttestation(a) => {
                let reading = attested_reading(a).map_err(|reason| (r.id, reason))?;
                let counted = intervals.entry(reading.meter).or_default();
                if counted.conflicts(&reading) {
                    return Err((r.id, Reason::SecondAttestation));
                }
                counted.add(&reading);
                let delta = reading.register_end_wh.saturating_sub(reading.register_start_wh);
                let wh = energy.entry(reading.meter).or_default();
                *wh = wh.saturating_add(meter::credited_wh(reading.status, delta));
                attestations += 1;
            }
            _ => return Err((r.id, Reason::WrongKind)),
        }
    }
    Ok(Counted { beacons, witnesses, energy, attestations })
}

fn check_witness(
    ctx: &Context,
    b: &BeaconReport,
    w: &WitnessReport,
    beaconer: &GatewayId,
    signer: &GatewayId,
) -> Result<(), Reason> {
    witness::check(b, w, beaconer, signer, &ctx.witness).map(|_| ()).map_err(Reason::Witness)
}

/// The reports a proposer counts: every held report that passes the content
/// rules, greedily in id order within each kind — beacons first (so witnesses
/// find them), then meter attestations (their own share, which witnesses
/// cannot take), then witnesses — within the per-epoch and per-gateway
/// limits. Deterministic for a given pool.
pub fn select(ctx: &Context, pool: &Pool) -> Vec<Hash32> {
    let cap = ctx.limits.epoch_cap();
    let mut chosen: Vec<Hash32> = Vec::new();
    let mut shares = Shares::default();
    let room = |chosen: &Vec<Hash32>, shares: &Shares, r: &Report, kind: Kind| {
        chosen.len() < cap && !shares.full(&r.signer, kind, &ctx.limits)
    };
    let mut beacons: BTreeMap<BeaconId, (&GatewayId, &BeaconReport)> = BTreeMap::new();
    let mut beaconers: BTreeSet<&GatewayId> = BTreeSet::new();
    // Only reports of the epoch's registered gateways (the pool may hold
    // some admitted before a late-learned registry change).
    let registered = |r: &&Report| ctx.registry.contains(&r.signer);
    for r in pool.reports().filter(registered) {
        let Message::BeaconReport(b) = &r.body else { continue };
        if !room(&chosen, &shares, r, Kind::Beacon)
            || b.entropy != ctx.previous
            || !beacon::is_derived(b, &r.signer)
            || beaconers.contains(&r.signer)
            || witness::beacon_plausible(b).is_err()
        {
            continue;
        }
        beaconers.insert(&r.signer);
        beacons.insert(b.beacon_id, (&r.signer, b));
        shares.add(&r.signer, Kind::Beacon);
        chosen.push(r.id);
    }
    let mut intervals: BTreeMap<MeterId, MeterIntervals> = BTreeMap::new();
    let mut attestations = 0;
    for r in pool.reports().filter(registered) {
        let Message::MeterAttestation(a) = &r.body else { continue };
        if attestations >= ctx.limits.attestation_cap() || !room(&chosen, &shares, r, Kind::Attestation) {
            continue;
        }
        let Ok(reading) = attested_reading(a) else { continue };
        let counted = intervals.entry(reading.meter).or_default();
        if counted.conflicts(&reading) {
            continue;
        }
        counted.add(&reading);
        attestations += 1;
        shares.add(&r.signer, Kind::Attestation);
        chosen.push(r.id);
    }
    let mut witnessed: BTreeSet<(BeaconId, &GatewayId)> = BTreeSet::new();
    for r in pool.reports().filter(registered) {
        let Message::WitnessReport(w) = &r.body else { continue };
        if !room(&chosen, &shares, r, Kind::Witness) {
            continue;
        }
        let Some((beaconer, b)) = beacons.get(&w.beacon_id) else { continue };
        if witnessed.contains(&(w.beacon_id, &r.signer))
            || check_witness(ctx, b, w, beaconer, &r.signer).is_err()
        {
            continue;
        }
        witnessed.insert((w.beacon_id, &r.signer));
        shares.add(&r.signer, Kind::Witness);
        chosen.push(r.id);
    }
    chosen.sort();
    chosen
}

/// Recomputes the summary of the listed reports (ids sorted, no duplicates).
pub fn summarize(ctx: &Context, reports: &[&Report]) -> Result<EpochSummary, (Hash32, Reason)> {
    if reports.len() > ctx.limits.epoch_cap() {
        return Err((Hash32::ZERO, Reason::TooMany));
    }
    if let Some(w) = reports.windows(2).find(|w| w[0].id >= w[1].id) {
        return Err((w[1].id, Reason::NotSorted));
    }
    let counted = count(ctx, reports)?;
    let tally = tally(ctx, &counted);
    let witness_count: usize = counted.witnesses.values().map(Vec::len).sum();
    Ok(EpochSummary {
        region: ctx.region,
        epoch: ctx.epoch,
        previous: ctx.previous,
        reports_root: MerkleTree::new(reports.iter().map(|r| report_leaf(&r.id))).root(),
        rewards_root: tally.root(),
        energy_root: MerkleTree::new(counted.energy.iter().map(|(m, wh)| energy_leaf(m, *wh))).root(),
        beacon_count: counted.beacons.len() as u32,
        witness_count: witness_count as u32,
        attestation_count: counted.attestations as u32,
        reward_units: tally.total(),
        energy_wh: counted.energy.values().fold(0u64, |sum, wh| sum.saturating_add(*wh)),
        committee_hash: ctx.committee_hash,
    })
}

/// The rewards of the counted beacons and their witnesses. Of each beacon's
/// witnesses, those the cross-witness rule ([`rewarded_witnesses`]) excludes
/// earn nothing and do not count in the formula's witness number.
fn tally(ctx: &Context, counted: &Counted<'_>) -> RewardTally {
    let mut tally = RewardTally::new();
    for (beacon_id, (beaconer, _)) in &counted.beacons {
        let ws = counted.witnesses.get(beacon_id).map(Vec::as_slice).unwrap_or_default();
        tally.add_beacon(&ctx.rewards, beaconer, &rewarded_witnesses(ws, &ctx.witness));
    }
    tally
}

/// One listed witness report of a beacon, as the reward rules see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListedWitness {
    /// The witness (the report's signer).
    pub witness: GatewayId,
    /// Its [`witness::excess_loss_ddb`] at the asserted distance.
    pub excess_loss_ddb: i64,
    /// Its reception time, Unix ms.
    pub received_at_ms: u64,
}

/// The rewarded witnesses of one beacon, in id order, from its listed
/// witnesses: those the cross-witness rule
/// ([`witness::free_space_corroborated`]) does not exclude, then of those the
/// [`witness::Params::max_rewarded_witnesses`] earliest received, ties to the
/// smaller id ([`witness::select`]). Depends on the set, not on its order.
/// The simulator applies the same function to recompute rewards.
pub fn rewarded_witnesses(witnesses: &[ListedWitness], params: &witness::Params) -> Vec<GatewayId> {
    let excess: Vec<i64> = witnesses.iter().map(|l| l.excess_loss_ddb).collect();
    let candidates: Vec<witness::Candidate> = witnesses
        .iter()
        .zip(witness::free_space_corroborated(&excess))
        .map(|(l, verdict)| witness::Candidate {
            witness: l.witness,
            received_at_ms: l.received_at_ms,
            verdict,
        })
        .collect();
    let mut rewarded: Vec<GatewayId> = candidates
        .iter()
        .zip(witness::select(&candidates, params))
        .filter_map(|(c, verdict)| verdict.is_ok().then_some(c.witness))
        .collect();
    rewarded.sort();
    rewarded
}

/// The lists under a summary's rewards and energy roots, as [`summarize`]
/// builds those roots from the same `reports`: every rewarded gateway with
/// its units, and every credited meter with its Wh, each in id order.
pub type Settled = (Vec<(GatewayId, u64)>, Vec<(MeterId, u64)>);

/// What the listed reports settle (see [`Settled`]); refused as
/// [`summarize`] refuses them.
pub fn settle(ctx: &Context, reports: &[&Report]) -> Result<Settled, (Hash32, Reason)> {
    let counted = count(ctx, reports)?;
    let rewards = tally(ctx, &counted).iter().map(|(g, u)| (*g, *u)).collect();
    Ok((rewards, counted.energy.into_iter().collect()))
}

/// The hash of a summary, [`Hash32::ZERO`] if it cannot be encoded (never for
/// a summary: its encoding has a fixed size under its limit).
pub fn summary_hash(summary: &EpochSummary) -> Hash32 {
    codec::summary_hash(summary).unwrap_or(Hash32::ZERO)
}
