//! The anchor book: what an anchor committee member signs when several
//! regions share one chain.
//!
//! `EpochAnchor` keeps one root per epoch range, so the root of a range must
//! cover every region's summaries of those epochs (docs/chain.md §5). A
//! region's committee decides only its own region; the other regions'
//! decisions reach a gateway on the global topic, where each region's
//! proposer publishes the [`EpochSummary`] and its [`Certificate`]. The book
//! pairs them, checks each certificate against the committee the registry
//! gives that region (the summary's `committee_hash` names it; more than two
//! thirds of its members must have signed), and keeps one certified summary
//! per (region, epoch).
//!
//! A range `from..=to` (aligned to the anchoring period) is **ready** when
//! every region the registry expects has a certified summary for every epoch
//! of the range, or at the latest [`AnchorBookConfig::wait_ms`] after the
//! range's last epoch ended: then it is signed over the summaries held, so a
//! region that stopped deciding delays an anchor by one wait, never blocks
//! it. Members decide from the same messages at the same moment, so they
//! normally sign the same root; one that missed a summary signs another root,
//! which the collector counts apart, and the quorum forms without it.
//!
//! Ranges are taken in order, each once. The book holds certified summaries
//! from the first range not yet signed to the epoch after the current one,
//! and at most [`MAX_UNPAIRED`] unpaired halves per (region, epoch), so its
//! memory is bounded by the registry's regions times that window.
//!
//! Pure: no IO, no clock (time is an input).

use std::collections::{BTreeMap, BTreeSet};

use meshd_protocol::anchor::{AnchorDomain, EpochRange};
use meshd_protocol::epoch::EpochClock;
use meshd_protocol::geo::{Location, Region};
pub use meshd_protocol::merkle::AnchorLeaf;
use meshd_protocol::message::{Certificate, EpochSummary};
use meshd_protocol::{GatewayId, Hash32, codec};

use crate::committee::{Committee, anchor_root, committee_regions, valid_commit_signatures};

/// Registry snapshots kept: the one in force at the oldest epoch still
/// collected and the later ones. Four cover a registry change per anchoring
/// period with room to spare; an older certificate no longer finds its
/// committee and is refused.
pub const MAX_REGISTRIES: usize = 4;

/// Unpaired summaries (or certificates) kept per (region, epoch): the real
/// one and one forgery by a member, so a member publishing junk cannot push
/// the real message out, and memory stays bounded.
pub const MAX_UNPAIRED: usize = 2;

/// How an [`AnchorBook`] behaves.
#[derive(Clone, Debug)]
pub struct AnchorBookConfig {
    /// Network name: the signing domain of commit signatures.
    pub network: String,
    /// The H3 resolution of home cells (`network.region_resolution`).
    pub resolution: u8,
    /// Epochs per anchored range (`A`, at least 1).
    pub anchor_every: u64,
    /// The epoch schedule.
    pub clock: EpochClock,
    /// How long after a range's last epoch ended it is signed with the
    /// summaries held, ms. See the module docs.
    pub wait_ms: u64,
    /// The anchor contract, for the digest to sign.
    pub domain: AnchorDomain,
}

/// A range to sign: its leaves (by epoch, then region), their root and the
/// EIP-712 digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadyRange {
    /// The range.
    pub range: EpochRange,
    /// One leaf per certified summary of the range.
    pub leaves: Vec<AnchorLeaf>,
    /// The Merkle root over the leaves.
    pub root: Hash32,
    /// The digest the anchor key signs.
    pub digest: Hash32,
    /// The (region, epoch) pairs the registry expected and that had no
    /// certified summary when the wait ran out: empty when complete.
    pub missing: Vec<(Region, u64)>,
}

/// Why a summary or certificate was not taken. Each is a reason to log and
/// count; the gossip verdict is [`Refusal::is_provably_invalid`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The epoch is before the first range still collected, or after the next epoch.
    #[error("epoch {epoch} is outside the epochs collected ({low}..={high})")]
    OutOfWindow {
        /// The epoch.
        epoch: u64,
        /// First epoch collected.
        low: u64,
        /// Last epoch collected.
        high: u64,
    },
    /// No registry snapshot gives the region a committee with the summary's
    /// `committee_hash` (an unknown region, or a registry this gateway does
    /// not know yet or any more).
    #[error("no known committee of region {region:#x} has hash {committee}")]
    UnknownCommittee {
        /// The region.
        region: u64,
        /// The summary's committee hash.
        committee: Hash32,
    },
    /// The publisher is not a member of any known committee of the region.
    #[error("the publisher is not a committee member of region {region:#x}")]
    NotMember {
        /// The region.
        region: u64,
    },
    /// The certificate does not match the summary (region, epoch or hash).
    #[error("the certificate is for another summary")]
    Mismatch,
    /// At most two thirds of the committee signed validly.
    #[error("{valid} valid signatures of a committee of {members}: no quorum")]
    NoQuorum {
        /// Valid signatures of distinct members.
        valid: usize,
        /// The committee's size.
        members: usize,
    },
    /// Two certified summaries for one region and epoch: the region's
    /// consensus forked, or more than a third of its committee signed twice.
    #[error("a second certified summary for region {region:#x} epoch {epoch}")]
    Conflict {
        /// The region.
        region: u64,
        /// The epoch.
        epoch: u64,
    },
    /// Too many unpaired halves for this (region, epoch) already.
    #[error("too many unpaired messages for region {region:#x} epoch {epoch}")]
    Crowded {
        /// The region.
        region: u64,
        /// The epoch.
        epoch: u64,
    },
    /// The summary cannot be encoded (never for a decoded one).
    #[error("the summary cannot be hashed")]
    Unhashable,
}

impl Refusal {
    /// Whether the message is provably invalid (a bad certificate or a
    /// forged pairing), as opposed to merely not useful here now.
    pub fn is_provably_invalid(&self) -> bool {
        matches!(self, Refusal::NoQuorum { .. } | Refusal::Conflict { .. })
    }

    /// Whether the refusal is about this gateway's own collecting only (its
    /// window of epochs), not about the message: another gateway, still
    /// collecting that epoch, needs it, so gossip must relay it.
    pub fn is_local(&self) -> bool {
        matches!(self, Refusal::OutOfWindow { .. })
    }

    /// A short stable name for metrics labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            Refusal::OutOfWindow { .. } => "out_of_window",
            Refusal::UnknownCommittee { .. } => "unknown_committee",
            Refusal::NotMember { .. } => "not_member",
            Refusal::Mismatch => "mismatch",
            Refusal::NoQuorum { .. } => "no_quorum",
            Refusal::Conflict { .. } => "conflict",
            Refusal::Crowded { .. } => "crowded",
            Refusal::Unhashable => "unhashable",
        }
    }
}

/// What an offer did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Taken {
    /// Held until its other half arrives.
    Waiting,
    /// Paired and certified: the region's epoch is known.
    Certified,
    /// Known already.
    Duplicate,
}

/// Plain counters, exported by the daemon.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AnchorBookMetrics {
    /// Summaries certified (own region's included).
    pub certified: u64,
    /// Messages refused.
    pub refused: u64,
    /// Ranges handed out complete.
    pub complete: u64,
    /// Ranges handed out after the wait with summaries missing.
    pub incomplete: u64,
    /// Commit signatures checked.
    pub signatures_verified: u64,
}

/// One registry snapshot: each region's committee and its hash.
#[derive(Clone, Debug, Default)]
struct Snapshot {
    committees: BTreeMap<Region, (Committee, Hash32)>,
}

/// The certified summaries of several regions, and the ranges to sign. See the module docs.
#[derive(Clone, Debug)]
pub struct AnchorBook {
    config: AnchorBookConfig,
    /// Registry snapshots by the first epoch they apply to.
    snapshots: BTreeMap<u64, Snapshot>,
    /// The fallback when no registry is known: only this region is expected.
    own_region: Region,
    /// Certified summaries' leaves by (epoch, region).
    certified: BTreeMap<(u64, Region), AnchorLeaf>,
    /// Summaries waiting for their certificate, by (epoch, region).
    summaries: BTreeMap<(u64, Region), Vec<(Hash32, EpochSummary)>>,
    /// Certificates waiting for their summary, by (epoch, region).
    certificates: BTreeMap<(u64, Region), Vec<Certificate>>,
    /// The first epoch of the first range not yet handed out.
    next_range: u64,
    metrics: AnchorBookMetrics,
}

impl AnchorBook {
    /// An empty book for a gateway of `own_region`, starting with the range
    /// that holds `first_epoch`.
    pub fn new(config: AnchorBookConfig, own_region: Region, first_epoch: u64) -> AnchorBook {
        let every = config.anchor_every.max(1);
        AnchorBook {
            config: AnchorBookConfig { anchor_every: every, ..config },
            snapshots: BTreeMap::new(),
            own_region,
            certified: BTreeMap::new(),
            summaries: BTreeMap::new(),
            certificates: BTreeMap::new(),
            next_range: first_epoch - first_epoch % every,
            metrics: AnchorBookMetrics::default(),
        }
    }

    /// The counters.
    pub fn metrics(&self) -> AnchorBookMetrics {
        self.metrics
    }

    /// The first epoch of the first range not yet handed out.
    pub fn next_range(&self) -> u64 {
        self.next_range
    }

    /// Ranges before `epoch`'s are done (signed before a restart, or too
    /// old to collect): they are never handed out.
    pub fn skip_before(&mut self, epoch: u64) {
        let start = epoch - epoch % self.config.anchor_every;
        if start > self.next_range {
            self.next_range = start;
            self.prune();
        }
    }

    /// The registered gateways and their locations, in force from
    /// `from_epoch` on: every region's committee is computed as each of its
    /// gateways computes it ([`committee_regions`]).
    pub fn set_registry(&mut self, from_epoch: u64, registry: &[(GatewayId, Location)]) {
        let mut members: BTreeMap<Region, Vec<GatewayId>> = BTreeMap::new();
        for (id, region) in committee_regions(self.config.resolution, registry) {
            members.entry(region).or_default().push(id);
        }
        let committees = members
            .into_iter()
            .map(|(region, ids)| {
                let committee = Committee::new(ids, &Hash32::ZERO);
                let hash = committee.hash();
                (region, (committee, hash))
            })
            .collect();
        self.snapshots.insert(from_epoch, Snapshot { committees });
        // Keep the snapshot in force at the oldest collected epoch and the later ones.
        let base = self.snapshots.range(..=self.next_range).next_back().map(|(k, _)| *k);
        if let Some(base) = base {
            self.snapshots.retain(|k, _| *k >= base);
        }
        while self.snapshots.len() > MAX_REGISTRIES {
            self.snapshots.pop_first();
        }
    }

    /// The regions expected to decide `epoch`.
    fn expected(&self, epoch: u64) -> BTreeSet<Region> {
        match self.snapshots.range(..=epoch).next_back().or_else(|| self.snapshots.iter().next()) {
            Some((_, snapshot)) if !snapshot.committees.is_empty() => {
                snapshot.committees.keys().copied().collect()
            }
            _ => BTreeSet::from([self.own_region]),
        }
    }

    fn window(&self, now_ms: u64) -> (u64, u64) {
        let current = self.config.clock.epoch_at(now_ms).unwrap_or(0);
        (self.next_range, current.saturating_add(1))
    }

    fn check_window(&self, epoch: u64, now_ms: u64) -> Result<(), Refusal> {
        let (low, high) = self.window(now_ms);
        if epoch < low || epoch > high {
            return Err(Refusal::OutOfWindow { epoch, low, high });
        }
        Ok(())
    }

    fn is_member(&self, region: Region, publisher: &GatewayId) -> bool {
        self.snapshots
            .values()
            .any(|s| s.committees.get(&region).is_some_and(|(c, _)| c.index(publisher).is_some()))
    }

    /// A summary of this gateway's own region, finalized by its node: taken
    /// as certified (the node checked it).
    pub fn own(&mut self, summary: &EpochSummary) {
        let Ok(hash) = codec::summary_hash(summary) else { return };
        let key = (summary.epoch, summary.region);
        if summary.epoch >= self.next_range && !self.certified.contains_key(&key) {
            self.certified.insert(key, AnchorLeaf::of(summary, hash));
            self.metrics.certified += 1;
        }
    }

    /// A region's summary from the global topic, published by `publisher`.
    pub fn offer_summary(
        &mut self,
        publisher: &GatewayId,
        summary: EpochSummary,
        now_ms: u64,
    ) -> Result<Taken, Refusal> {
        let result = self.take_summary(publisher, summary, now_ms);
        self.counted(result)
    }

    fn counted(&mut self, result: Result<Taken, Refusal>) -> Result<Taken, Refusal> {
        if result.is_err() {
            self.metrics.refused += 1;
        }
        result
    }

    /// What a half of a decision whose (epoch, region) is certified already
    /// amounts to: a copy when it names the certified summary, a conflict otherwise.
    fn against_certified(&self, key: (u64, Region), hash: &Hash32) -> Option<Result<Taken, Refusal>> {
        let leaf = self.certified.get(&key)?;
        Some(if leaf.summary_hash == *hash {
            Ok(Taken::Duplicate)
        } else {
            Err(Refusal::Conflict { region: key.1.0, epoch: key.0 })
        })
    }

    fn take_summary(
        &mut self,
        publisher: &GatewayId,
        summary: EpochSummary,
        now_ms: u64,
    ) -> Result<Taken, Refusal> {
        self.check_window(summary.epoch, now_ms)?;
        let key = (summary.epoch, summary.region);
        let hash = codec::summary_hash(&summary).map_err(|_| Refusal::Unhashable)?;
        if let Some(known) = self.against_certified(key, &hash) {
            return known;
        }
        if !self.is_member(summary.region, publisher) {
            return Err(Refusal::NotMember { region: summary.region.0 });
        }
        self.committee_of(&summary)?;
        // A certificate for it may be waiting.
        let waiting =
            self.certificates.get(&key).and_then(|list| list.iter().position(|c| c.summary == hash));
        if let Some(i) = waiting {
            let certificate = self.certificates.get_mut(&key).map(|list| list.remove(i));
            if let Some(certificate) = certificate {
                return self.certify(&summary, hash, &certificate);
            }
        }
        let list = self.summaries.entry(key).or_default();
        if list.iter().any(|(h, _)| *h == hash) {
            return Ok(Taken::Duplicate);
        }
        if list.len() >= MAX_UNPAIRED {
            return Err(Refusal::Crowded { region: summary.region.0, epoch: summary.epoch });
        }
        list.push((hash, summary));
        Ok(Taken::Waiting)
    }

    /// A region's certificate from the global topic, published by `publisher`.
    pub fn offer_certificate(
        &mut self,
        publisher: &GatewayId,
        certificate: Certificate,
        now_ms: u64,
    ) -> Result<Taken, Refusal> {
        let result = self.take_certificate(publisher, certificate, now_ms);
        self.counted(result)
    }

    fn take_certificate(
        &mut self,
        publisher: &GatewayId,
        certificate: Certificate,
        now_ms: u64,
    ) -> Result<Taken, Refusal> {
        self.check_window(certificate.epoch, now_ms)?;
        let key = (certificate.epoch, certificate.region);
        if let Some(known) = self.against_certified(key, &certificate.summary) {
            return known;
        }
        if !self.is_member(certificate.region, publisher) {
            return Err(Refusal::NotMember { region: certificate.region.0 });
        }
        let waiting = self
            .summaries
            .get(&key)
            .and_then(|list| list.iter().position(|(h, _)| *h == certificate.summary));
        if let Some(i) = waiting {
            let summary = self.summaries.get_mut(&key).map(|list| list.remove(i));
            if let Some((hash, summary)) = summary {
                return self.certify(&summary, hash, &certificate);
            }
        }
        let list = self.certificates.entry(key).or_default();
        if list.iter().any(|c| c == &certificate) {
            return Ok(Taken::Duplicate);
        }
        if list.len() >= MAX_UNPAIRED {
            return Err(Refusal::Crowded { region: certificate.region.0, epoch: certificate.epoch });
        }
        list.push(certificate);
        Ok(Taken::Waiting)
    }

    /// The committee the summary names, from the known snapshots.
    fn committee_of(&self, summary: &EpochSummary) -> Result<&Committee, Refusal> {
        self.snapshots
            .values()
            .rev()
            .filter_map(|s| s.committees.get(&summary.region))
            .find(|(_, hash)| *hash == summary.committee_hash)
            .map(|(committee, _)| committee)
            .ok_or(Refusal::UnknownCommittee { region: summary.region.0, committee: summary.committee_hash })
    }

    fn certify(
        &mut self,
        summary: &EpochSummary,
        hash: Hash32,
        certificate: &Certificate,
    ) -> Result<Taken, Refusal> {
        if certificate.region != summary.region
            || certificate.epoch != summary.epoch
            || certificate.summary != hash
        {
            return Err(Refusal::Mismatch);
        }
        let committee = self.committee_of(summary)?;
        let (valid, checked) = valid_commit_signatures(&self.config.network, committee, certificate, &hash);
        let members = committee.len();
        self.metrics.signatures_verified += checked as u64;
        // The consensus quorum: more than two thirds of the members.
        if valid <= 2 * members / 3 {
            return Err(Refusal::NoQuorum { valid, members });
        }
        let key = (summary.epoch, summary.region);
        self.summaries.remove(&key);
        self.certificates.remove(&key);
        self.certified.insert(key, AnchorLeaf::of(summary, hash));
        self.metrics.certified += 1;
        Ok(Taken::Certified)
    }

    /// The (region, epoch) pairs of the next range that the registry
    /// expects, that should have been decided by `now_ms` (a quarter epoch
    /// after the decision could start) and that have no certified summary:
    /// what to ask the region's members for ([`AnchorBook::members`]), since
    /// gossip may have lost the published decision. At most `limit`.
    pub fn overdue(&self, now_ms: u64, limit: usize) -> Vec<(Region, u64)> {
        let clock = &self.config.clock;
        let from = self.next_range;
        let to = from + self.config.anchor_every - 1;
        let mut overdue = Vec::new();
        for epoch in from..=to {
            let due = clock.decides_at_ms(epoch).map(|at| at.saturating_add(clock.length_ms() / 4));
            if due.is_ok_and(|due| due <= now_ms) {
                for region in self.expected(epoch) {
                    if !self.certified.contains_key(&(epoch, region)) && overdue.len() < limit {
                        overdue.push((region, epoch));
                    }
                }
            }
        }
        overdue
    }

    /// The members of `region`'s committee in force at `epoch`, as the
    /// registry gives it (empty for a region it does not know).
    pub fn members(&self, region: Region, epoch: u64) -> Vec<GatewayId> {
        self.snapshots
            .range(..=epoch)
            .next_back()
            .or_else(|| self.snapshots.iter().next())
            .and_then(|(_, snapshot)| snapshot.committees.get(&region))
            .map(|(committee, _)| committee.members().to_vec())
            .unwrap_or_default()
    }

    /// The next range to sign, if it is ready at `now_ms` (see the module
    /// docs). Call until `None`; each range is handed out once.
    pub fn poll(&mut self, now_ms: u64) -> Option<ReadyRange> {
        loop {
            let from = self.next_range;
            let to = from + self.config.anchor_every - 1;
            let ended = self.config.clock.end_ms(to).ok()?;
            let mut missing = Vec::new();
            for epoch in from..=to {
                for region in self.expected(epoch) {
                    if !self.certified.contains_key(&(epoch, region)) {
                        missing.push((region, epoch));
                    }
                }
            }
            let timed_out = now_ms >= ended.saturating_add(self.config.wait_ms);
            if !missing.is_empty() && !timed_out {
                return None;
            }
            self.next_range = to + 1;
            let leaves: Vec<AnchorLeaf> = self
                .certified
                .range((from, Region(0))..)
                .take_while(|((e, _), _)| *e <= to)
                .map(|(_, l)| *l)
                .collect();
            self.prune();
            if leaves.is_empty() {
                // Nothing decided in the whole range (this gateway was cut
                // off): nothing to anchor; look at the next range.
                self.metrics.incomplete += 1;
                continue;
            }
            if missing.is_empty() {
                self.metrics.complete += 1;
            } else {
                self.metrics.incomplete += 1;
            }
            let range = EpochRange { from, to };
            let hashes: Vec<Hash32> = leaves.iter().map(AnchorLeaf::hash).collect();
            let root = anchor_root(&hashes);
            let digest = self.config.domain.anchor_digest(range, &root);
            return Some(ReadyRange { range, leaves, root, digest, missing });
        }
    }

    fn prune(&mut self) {
        let low = self.next_range;
        self.certified.retain(|(e, _), _| *e >= low);
        self.summaries.retain(|(e, _), _| *e >= low);
        self.certificates.retain(|(e, _), _| *e >= low);
    }
}

#[cfg(test)]
mod tests {
    use meshd_protocol::keys::{EvmAddress, Keypair};
    use meshd_protocol::merkle::summary_leaf;
    use meshd_protocol::message::CommitSignature;

    use super::*;

    const NETWORK: &str = "test";
    const RESOLUTION: u8 = 4;
    const EPOCH_MS: u64 = 10_000;

    /// A region and its gateways' keys.
    type Members = (Region, Vec<Keypair>);

    /// Two regions far apart (Zurich, Lisbon), four gateways each.
    fn setup() -> (AnchorBook, Vec<Members>, Vec<(GatewayId, Location)>) {
        let mut registry = Vec::new();
        let mut regions = Vec::new();
        for (r, (lat, lng)) in [(47.37, 8.54), (38.72, -9.14)].into_iter().enumerate() {
            let keys: Vec<Keypair> =
                (0..4).map(|i| Keypair::from_secret([10 * r as u8 + i + 1; 32])).collect();
            let at = Location::from_lat_lng(lat, lng).expect("location");
            registry.extend(keys.iter().map(|k| (k.gateway_id(), at)));
            regions.push((Region::of(at, RESOLUTION).expect("region"), keys));
        }
        let config = AnchorBookConfig {
            network: NETWORK.into(),
            resolution: RESOLUTION,
            anchor_every: 2,
            clock: EpochClock::new(0, EPOCH_MS, 2_000).expect("clock"),
            wait_ms: EPOCH_MS,
            domain: AnchorDomain { chain_id: 31337, verifying_contract: EvmAddress([0xAA; 20]) },
        };
        let mut book = AnchorBook::new(config, regions[0].0, 0);
        book.set_registry(0, &registry);
        (book, regions, registry)
    }

    fn decided(region: Region, keys: &[Keypair], epoch: u64, signers: usize) -> (EpochSummary, Certificate) {
        let ids: Vec<GatewayId> = keys.iter().map(Keypair::gateway_id).collect();
        let summary = EpochSummary {
            region,
            epoch,
            previous: Hash32::ZERO,
            reports_root: Hash32([epoch as u8; 32]),
            rewards_root: Hash32::ZERO,
            energy_root: Hash32::ZERO,
            beacon_count: 0,
            witness_count: 0,
            attestation_count: 0,
            reward_units: 0,
            energy_wh: 0,
            committee_hash: Committee::new(ids, &Hash32::ZERO).hash(),
        };
        let hash = codec::summary_hash(&summary).expect("hash");
        let bytes = Certificate::sign_bytes(NETWORK, region, epoch, 0, &hash);
        let mut signatures: Vec<CommitSignature> = keys[..signers]
            .iter()
            .map(|k| CommitSignature { signer: k.gateway_id(), signature: k.sign(&bytes) })
            .collect();
        signatures.sort_by_key(|s| s.signer);
        (summary, Certificate { region, epoch, round: 0, summary: hash, signatures })
    }

    #[test]
    fn the_leaf_hash_is_the_protocol_summary_leaf() {
        let (_, regions, _) = setup();
        let (summary, certificate) = decided(regions[0].0, &regions[0].1, 3, 3);
        let leaf = AnchorLeaf::of(&summary, certificate.summary);
        assert_eq!(leaf.hash(), summary_leaf(&summary, &certificate.summary));
    }

    #[test]
    fn a_range_is_ready_when_every_region_decided_each_epoch() {
        let (mut book, regions, _) = setup();
        let now = 2 * EPOCH_MS + 1_000;
        let (own, other) = (&regions[0], &regions[1]);
        for epoch in 0..2 {
            book.own(&decided(own.0, &own.1, epoch, 3).0);
        }
        assert_eq!(book.poll(now), None, "the other region has not decided yet");
        let publisher = other.1[0].gateway_id();
        for epoch in 0..2 {
            let (summary, certificate) = decided(other.0, &other.1, epoch, 3);
            // Either half may come first.
            if epoch == 0 {
                assert_eq!(book.offer_summary(&publisher, summary, now), Ok(Taken::Waiting));
                assert_eq!(
                    book.offer_certificate(&publisher, certificate.clone(), now),
                    Ok(Taken::Certified)
                );
            } else {
                assert_eq!(book.offer_certificate(&publisher, certificate.clone(), now), Ok(Taken::Waiting));
                assert_eq!(book.offer_summary(&publisher, summary, now), Ok(Taken::Certified));
            }
            assert_eq!(book.offer_certificate(&publisher, certificate, now), Ok(Taken::Duplicate));
        }
        let ready = book.poll(now).expect("complete");
        assert_eq!(ready.range, EpochRange { from: 0, to: 1 });
        assert_eq!(ready.leaves.len(), 4);
        assert!(ready.missing.is_empty());
        let hashes: Vec<Hash32> = ready.leaves.iter().map(AnchorLeaf::hash).collect();
        assert_eq!(ready.root, anchor_root(&hashes));
        assert_eq!(book.poll(now), None, "each range is handed out once");
        assert_eq!(book.next_range(), 2);
    }

    #[test]
    fn a_region_that_never_decides_delays_the_range_by_the_wait() {
        let (mut book, regions, _) = setup();
        let own = &regions[0];
        for epoch in 0..2 {
            book.own(&decided(own.0, &own.1, epoch, 3).0);
        }
        let ended = 2 * EPOCH_MS;
        assert_eq!(book.poll(ended + EPOCH_MS - 1), None);
        let ready = book.poll(ended + EPOCH_MS).expect("signed after the wait");
        assert_eq!(ready.leaves.len(), 2);
        assert_eq!(ready.missing, vec![(regions[1].0, 0), (regions[1].0, 1)]);
        assert_eq!(book.metrics().incomplete, 1);
    }

    #[test]
    fn a_decision_gossip_lost_is_named_overdue_with_the_members_to_ask() {
        let (mut book, regions, _) = setup();
        let (own, other) = (&regions[0], &regions[1]);
        book.own(&decided(own.0, &own.1, 0, 3).0);
        // Epoch 0 is decided from 12 s (end 10 s, grace 2 s): due a quarter epoch later.
        assert_eq!(book.overdue(14_499, 8), Vec::new());
        assert_eq!(book.overdue(14_500, 8), vec![(other.0, 0)]);
        assert_eq!(book.overdue(24_500, 8), vec![(other.0, 0), (own.0, 1), (other.0, 1)]);
        assert_eq!(book.overdue(24_500, 1).len(), 1);
        let mut members: Vec<GatewayId> = other.1.iter().map(Keypair::gateway_id).collect();
        members.sort();
        assert_eq!(book.members(other.0, 0), members);
        assert_eq!(book.members(Region(12345), 0), Vec::new());
    }

    #[test]
    fn certificates_without_a_quorum_or_from_strangers_are_refused() {
        let (mut book, regions, _) = setup();
        let now = EPOCH_MS;
        let other = &regions[1];
        let member = other.1[0].gateway_id();
        // Two of four signatures: a quorum needs more than two thirds (3).
        let (summary, certificate) = decided(other.0, &other.1, 1, 2);
        assert_eq!(book.offer_summary(&member, summary, now), Ok(Taken::Waiting));
        assert_eq!(
            book.offer_certificate(&member, certificate, now),
            Err(Refusal::NoQuorum { valid: 2, members: 4 })
        );
        // A signature by a key outside the committee does not count.
        let (summary, mut certificate) = decided(other.0, &other.1, 0, 3);
        let stranger = Keypair::from_secret([99; 32]);
        certificate.signatures[0].signer = stranger.gateway_id();
        certificate.signatures[0].signature = stranger.sign(&[0]);
        assert_eq!(book.offer_summary(&member, summary.clone(), now), Ok(Taken::Waiting));
        assert_eq!(
            book.offer_certificate(&member, certificate, now),
            Err(Refusal::NoQuorum { valid: 2, members: 4 })
        );
        // Only the region's members may publish its decisions.
        assert_eq!(
            book.offer_summary(&regions[0].1[0].gateway_id(), summary.clone(), now),
            Err(Refusal::NotMember { region: other.0.0 })
        );
        // A summary naming an unknown committee.
        let mut forged = summary;
        forged.committee_hash = Hash32([7; 32]);
        assert!(matches!(book.offer_summary(&member, forged, now), Err(Refusal::UnknownCommittee { .. })));
        assert_eq!(book.metrics().refused, 4);
    }

    #[test]
    fn messages_outside_the_window_and_junk_beyond_the_cap_are_refused() {
        let (mut book, regions, _) = setup();
        let other = &regions[1];
        let member = other.1[0].gateway_id();
        let (summary, _) = decided(other.0, &other.1, 5, 3);
        assert!(matches!(book.offer_summary(&member, summary, EPOCH_MS), Err(Refusal::OutOfWindow { .. })));
        for n in 0..MAX_UNPAIRED as u8 + 1 {
            let (mut summary, _) = decided(other.0, &other.1, 1, 3);
            summary.energy_wh = u64::from(n);
            let taken = book.offer_summary(&member, summary, EPOCH_MS);
            if usize::from(n) < MAX_UNPAIRED {
                assert_eq!(taken, Ok(Taken::Waiting));
            } else {
                assert!(matches!(taken, Err(Refusal::Crowded { .. })));
            }
        }
        book.skip_before(2);
        let (summary, _) = decided(other.0, &other.1, 1, 3);
        assert!(matches!(book.offer_summary(&member, summary, EPOCH_MS), Err(Refusal::OutOfWindow { .. })));
    }

    #[test]
    fn a_second_certified_summary_for_a_region_and_epoch_is_a_conflict() {
        let (mut book, regions, _) = setup();
        let other = &regions[1];
        let member = other.1[0].gateway_id();
        let (summary, certificate) = decided(other.0, &other.1, 0, 4);
        book.offer_summary(&member, summary, EPOCH_MS).expect("summary");
        assert_eq!(book.offer_certificate(&member, certificate, EPOCH_MS), Ok(Taken::Certified));
        let (mut second, _) = decided(other.0, &other.1, 0, 4);
        second.energy_wh = 1;
        let refusal = book.offer_summary(&member, second, EPOCH_MS).expect_err("conflict");
        assert_eq!(refusal, Refusal::Conflict { region: other.0.0, epoch: 0 });
        assert!(refusal.is_provably_invalid());
    }

    #[test]
    fn a_committee_from_an_older_snapshot_still_certifies() {
        let (mut book, regions, mut registry) = setup();
        let other = &regions[1];
        let (summary, certificate) = decided(other.0, &other.1, 1, 3);
        // A fifth gateway joins the other region from epoch 1: the summary was
        // decided by the committee of four, which the older snapshot knows.
        registry.push((Keypair::from_secret([77; 32]).gateway_id(), registry[4].1));
        book.set_registry(1, &registry);
        let member = other.1[0].gateway_id();
        book.offer_summary(&member, summary, EPOCH_MS).expect("summary");
        assert_eq!(book.offer_certificate(&member, certificate, EPOCH_MS), Ok(Taken::Certified));
    }
}
