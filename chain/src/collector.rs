//! Collecting the anchor committee's signatures until a quorum, and deciding
//! who submits. Pure: no provider, no clock (time is an input in ms of any
//! monotonic clock), no randomness.
//!
//! Every committee member signs the anchor digest of the range it finalized
//! ([`sign_anchor`]) and publishes the [`AnchorSignature`] message on the
//! global topic. Every member feeds the ones it receives (its own included)
//! to [`Collector::offer`], which checks each signature (the signer is a
//! member of the committee, `ecrecover` of the digest gives the signer, `s`
//! is low and `v` is 27 or 28, exactly what `EpochAnchor` checks), keeps one
//! root per signer and range, and says when a root has a quorum.
//!
//! # Who submits
//!
//! The range's *designated* submitter is committee member
//! `(from / (to − from + 1)) mod n` in address order: ranges are aligned to
//! the anchoring period, so this is the anchor's sequence number and the duty
//! rotates round-robin. The member `k` places after it in that order submits
//! `k × fallback_delay_ms` after it saw the quorum. A late submitter's
//! [`crate::Anchorer::submit`] first reads the chain and finds a landed
//! anchor (`AlreadyAnchored`, no transaction), so the fallback costs a read,
//! not gas, when the designated member did its job.
//!
//! # Memory
//!
//! At most [`CollectorConfig::max_ranges`] ranges are held, each with at most
//! one signature per committee member: `max_ranges × n × ~150` bytes. A range
//! older than every held one is refused when the table is full; a newer one
//! evicts the oldest. Settled ranges are remembered (at most `max_ranges`)
//! so late signatures for them are dropped without an `ecrecover`.

use std::collections::{BTreeMap, BTreeSet};

use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
use meshd_protocol::hash::{Hash32, keccak256};
use meshd_protocol::keys::{AnchorKey, AnchorSignError, EvmAddress};
use meshd_protocol::message;

use crate::anchorer::AnchorSignature;
use crate::digest::{AnchorDomain, EpochRange, quorum};

/// Half the secp256k1 group order: OpenZeppelin's `ECDSA.recover` (and so
/// `EpochAnchor`) refuses signatures whose `s` is above it (malleability).
const HALF_ORDER: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x5d,
    0x57, 0x6e, 0x73, 0x57, 0xa4, 0x50, 0x1d, 0xdf, 0xe9, 0x2f, 0x46, 0x68, 0x1b, 0x20, 0xa0,
];

/// How a [`Collector`] behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CollectorConfig {
    /// Most ranges collected at once.
    pub max_ranges: usize,
    /// The wait between two successive submitters of a range, ms.
    pub fallback_delay_ms: u64,
}

impl Default for CollectorConfig {
    /// 16 ranges (with the default 24-epoch anchoring period, over two weeks
    /// of hourly epochs: far more than can be pending at once); 60 s between
    /// submitters (an anchor with 3 confirmations lands in ~10 s on Avalanche
    /// and ~40 s on Ethereum, so the next member normally finds it on chain).
    fn default() -> Self {
        CollectorConfig { max_ranges: 16, fallback_delay_ms: 60_000 }
    }
}

/// Why a signature was not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refused {
    /// `from_epoch > to_epoch`.
    #[error("invalid range: epochs {from}..={to}")]
    InvalidRange {
        /// The first epoch.
        from: u64,
        /// The last epoch.
        to: u64,
    },
    /// The signer is not on the anchor committee.
    #[error("{signer} is not on the anchor committee")]
    NotMember {
        /// The claimed signer.
        signer: EvmAddress,
    },
    /// The signature does not recover to the claimed signer (or is malformed,
    /// has a high `s` or a `v` other than 27 or 28).
    #[error("the signature of {signer} for {range} does not verify: {reason}")]
    BadSignature {
        /// The claimed signer.
        signer: EvmAddress,
        /// The range.
        range: EpochRange,
        /// What is wrong.
        reason: &'static str,
    },
    /// The signer already signed another root for this range.
    #[error("{signer} signed two roots for {range}: {first} and {second}")]
    Equivocation {
        /// The signer.
        signer: EvmAddress,
        /// The range.
        range: EpochRange,
        /// The root kept.
        first: Hash32,
        /// The root refused.
        second: Hash32,
    },
    /// The range is anchored already.
    #[error("{range} is settled")]
    Settled {
        /// The range.
        range: EpochRange,
    },
    /// The table is full of newer ranges.
    #[error("{range} is older than every range held and the table is full")]
    TooOld {
        /// The range.
        range: EpochRange,
    },
}

/// What [`Collector::offer`] did with a valid signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Offered {
    /// Kept; the root now has `count` of the `quorum` signatures it needs.
    Added {
        /// Signatures for this range and root.
        count: usize,
        /// The committee's quorum.
        quorum: usize,
    },
    /// This signature completed the quorum of its root.
    QuorumReached {
        /// The range.
        range: EpochRange,
        /// The root.
        root: Hash32,
    },
    /// The signer's signature of this root was held already.
    Duplicate,
}

/// A quorum ready to submit to `EpochAnchor::anchor`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submission {
    /// The range.
    pub range: EpochRange,
    /// The root.
    pub root: Hash32,
    /// Exactly a quorum of signatures, sorted by signer (each extra one costs ~7k gas).
    pub signatures: Vec<AnchorSignature>,
}

/// Plain counters, exported by the daemon.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CollectorMetrics {
    /// Valid signatures kept.
    pub accepted: u64,
    /// Signatures held already.
    pub duplicates: u64,
    /// Signatures refused (any [`Refused`]).
    pub refused: u64,
    /// Roots that reached a quorum.
    pub quorums: u64,
    /// Submissions handed out by [`Collector::poll_submission`].
    pub submissions: u64,
}

#[derive(Clone, Debug, Default)]
struct Pending {
    /// Per signer: the root it signed and the signature.
    by_signer: BTreeMap<EvmAddress, (Hash32, [u8; 65])>,
    /// The root with a quorum, and when its member should submit (ms).
    complete: Option<(Hash32, Option<u64>)>,
    /// Handed out and not yet reported back.
    in_flight: bool,
}

/// Gathers the anchor committee's signatures per (range, root). See the module docs.
#[derive(Clone, Debug)]
pub struct Collector {
    config: CollectorConfig,
    domain: AnchorDomain,
    committee: Vec<EvmAddress>,
    own: Option<EvmAddress>,
    pending: BTreeMap<EpochRange, Pending>,
    settled: BTreeSet<EpochRange>,
    metrics: CollectorMetrics,
}

/// Signs the anchor digest of `range` and `root` in `domain` with `key`: the
/// message a committee member publishes (and offers to its own collector).
pub fn sign_anchor(
    key: &AnchorKey,
    domain: &AnchorDomain,
    range: EpochRange,
    root: Hash32,
) -> Result<message::AnchorSignature, AnchorSignError> {
    let digest = domain.anchor_digest(range, &root);
    Ok(message::AnchorSignature {
        from_epoch: range.from,
        to_epoch: range.to,
        root,
        signer: key.address().0,
        signature: key.sign_digest(&digest.0)?,
    })
}

/// The address `signature` (`r ‖ s ‖ v`) over `digest` recovers to, checked
/// as `EpochAnchor` checks it (low `s`, `v` ∈ {27, 28}).
pub fn recover_signer(digest: &Hash32, signature: &[u8; 65]) -> Result<EvmAddress, &'static str> {
    let v = signature[64];
    if v != 27 && v != 28 {
        return Err("v is not 27 or 28");
    }
    if signature[32..64] > HALF_ORDER[..] {
        return Err("s is in the upper half of the curve order");
    }
    let parsed = Signature::from_slice(&signature[..64]).map_err(|_| "r or s is not a valid scalar")?;
    let recovery = RecoveryId::from_byte(v - 27).ok_or("v is not 27 or 28")?;
    let key = VerifyingKey::recover_from_prehash(&digest.0, &parsed, recovery)
        .map_err(|_| "no public key recovers from it")?;
    let point = key.to_encoded_point(false);
    let hash = keccak256(&point.as_bytes()[1..]);
    let mut address = [0u8; 20];
    address.copy_from_slice(&hash.0[12..]);
    Ok(EvmAddress(address))
}

impl Collector {
    /// A collector for the `EpochAnchor` of `domain` and the anchor committee
    /// `committee` (any order, duplicates ignored). `own` is this member's
    /// anchor address (`None` on a gateway that only watches: it never submits).
    pub fn new(
        config: CollectorConfig,
        domain: AnchorDomain,
        committee: impl IntoIterator<Item = EvmAddress>,
        own: Option<EvmAddress>,
    ) -> Collector {
        let mut collector = Collector {
            config,
            domain,
            committee: Vec::new(),
            own,
            pending: BTreeMap::new(),
            settled: BTreeSet::new(),
            metrics: CollectorMetrics::default(),
        };
        collector.set_committee(committee);
        collector
    }

    /// Replaces the committee (after a registry or committee change): drops
    /// the signatures of former members; quorums are re-counted.
    pub fn set_committee(&mut self, committee: impl IntoIterator<Item = EvmAddress>) {
        let members: BTreeSet<EvmAddress> = committee.into_iter().collect();
        self.committee = members.iter().copied().collect();
        let q = self.quorum();
        for pending in self.pending.values_mut() {
            pending.by_signer.retain(|signer, _| members.contains(signer));
            if let Some((root, _)) = pending.complete
                && pending.by_signer.values().filter(|(r, _)| *r == root).count() < q
            {
                pending.complete = None;
            }
        }
    }

    /// The committee, in address order.
    pub fn committee(&self) -> &[EvmAddress] {
        &self.committee
    }

    /// Signatures a root needs: `quorum(n)`, as the contract computes it.
    pub fn quorum(&self) -> usize {
        quorum(self.committee.len())
    }

    /// The counters.
    pub fn metrics(&self) -> CollectorMetrics {
        self.metrics
    }

    /// The range's designated submitter (see the module docs); `None` for an empty committee.
    pub fn designated(&self, range: EpochRange) -> Option<EvmAddress> {
        let n = self.committee.len() as u64;
        if n == 0 {
            return None;
        }
        let len = range.to.saturating_sub(range.from).saturating_add(1);
        Some(self.committee[((range.from / len) % n) as usize])
    }

    /// How long after the quorum this member submits `range`, ms: its place
    /// after the designated member times the fallback delay. `None` when this
    /// gateway is not on the committee.
    pub fn submit_delay_ms(&self, range: EpochRange) -> Option<u64> {
        let own = self.own?;
        let n = self.committee.len();
        let mine = self.committee.iter().position(|m| *m == own)?;
        let designated = self.committee.iter().position(|m| Some(*m) == self.designated(range))?;
        let rank = (mine + n - designated) % n;
        Some((rank as u64).saturating_mul(self.config.fallback_delay_ms))
    }

    /// Checks and keeps one signature received at `now_ms`.
    pub fn offer(&mut self, now_ms: u64, signature: &message::AnchorSignature) -> Result<Offered, Refused> {
        let result = self.check_and_insert(now_ms, signature);
        match &result {
            Ok(Offered::Duplicate) => self.metrics.duplicates += 1,
            Ok(Offered::QuorumReached { .. }) => {
                self.metrics.accepted += 1;
                self.metrics.quorums += 1;
            }
            Ok(Offered::Added { .. }) => self.metrics.accepted += 1,
            Err(_) => self.metrics.refused += 1,
        }
        result
    }

    fn check_and_insert(&mut self, now_ms: u64, m: &message::AnchorSignature) -> Result<Offered, Refused> {
        let (from, to) = (m.from_epoch, m.to_epoch);
        if from > to {
            return Err(Refused::InvalidRange { from, to });
        }
        let range = EpochRange { from, to };
        let signer = EvmAddress(m.signer);
        // Cheap checks first: an ecrecover costs far more than a lookup.
        if self.settled.contains(&range) {
            return Err(Refused::Settled { range });
        }
        if self.committee.binary_search(&signer).is_err() {
            return Err(Refused::NotMember { signer });
        }
        if let Some((root, _)) = self.pending.get(&range).and_then(|p| p.by_signer.get(&signer)) {
            if *root == m.root {
                return Ok(Offered::Duplicate);
            }
            // Checked before reporting: a forged message must not make an honest member look equivocating.
            self.verify(range, m)?;
            return Err(Refused::Equivocation { signer, range, first: *root, second: m.root });
        }
        if !self.pending.contains_key(&range) && self.pending.len() >= self.config.max_ranges {
            let oldest = self.pending.keys().next().copied();
            match oldest {
                Some(oldest) if oldest < range => {
                    self.verify(range, m)?;
                    tracing::warn!(%oldest, "anchor collector full: dropping the oldest range");
                    self.pending.remove(&oldest);
                }
                _ => return Err(Refused::TooOld { range }),
            }
        } else {
            self.verify(range, m)?;
        }
        let q = self.quorum();
        let delay = self.submit_delay_ms(range);
        let pending = self.pending.entry(range).or_default();
        pending.by_signer.insert(signer, (m.root, m.signature));
        let count = pending.by_signer.values().filter(|(r, _)| *r == m.root).count();
        if count >= q && pending.complete.is_none() {
            pending.complete = Some((m.root, delay.map(|d| now_ms.saturating_add(d))));
            return Ok(Offered::QuorumReached { range, root: m.root });
        }
        Ok(Offered::Added { count, quorum: q })
    }

    fn verify(&self, range: EpochRange, m: &message::AnchorSignature) -> Result<(), Refused> {
        let signer = EvmAddress(m.signer);
        let digest = self.domain.anchor_digest(range, &m.root);
        match recover_signer(&digest, &m.signature) {
            Ok(recovered) if recovered == signer => Ok(()),
            Ok(_) => Err(Refused::BadSignature { signer, range, reason: "it recovers to another address" }),
            Err(reason) => Err(Refused::BadSignature { signer, range, reason }),
        }
    }

    /// The complete set this member should submit now, if any: a root with a
    /// quorum whose turn (designated, or fallback after a delay) has come at
    /// `now_ms` and that is not already being submitted. Report the result
    /// with [`Collector::settled`] or [`Collector::submit_failed`].
    pub fn poll_submission(&mut self, now_ms: u64) -> Option<Submission> {
        let q = self.quorum();
        let (range, pending) = self
            .pending
            .iter_mut()
            .find(|(_, p)| !p.in_flight && matches!(p.complete, Some((_, Some(due))) if due <= now_ms))?;
        let (root, _) = pending.complete?;
        pending.in_flight = true;
        let signatures: Vec<AnchorSignature> = pending
            .by_signer
            .iter()
            .filter(|(_, (r, _))| *r == root)
            .take(q)
            .map(|(signer, (_, signature))| AnchorSignature { signer: *signer, signature: *signature })
            .collect();
        self.metrics.submissions += 1;
        Some(Submission { range: *range, root, signatures })
    }

    /// When [`Collector::poll_submission`] next has something, ms (`None`: not until a new signature).
    pub fn next_due_ms(&self) -> Option<u64> {
        self.pending
            .values()
            .filter(|p| !p.in_flight)
            .filter_map(|p| p.complete.and_then(|(_, due)| due))
            .min()
    }

    /// The range is anchored (by anyone): forget its signatures, drop late ones.
    pub fn settled(&mut self, range: EpochRange) {
        self.pending.remove(&range);
        self.settled.insert(range);
        while self.settled.len() > self.config.max_ranges {
            self.settled.pop_first();
        }
    }

    /// A submission failed at `now_ms`: try again a fallback delay later.
    pub fn submit_failed(&mut self, range: EpochRange, now_ms: u64) {
        if let Some(pending) = self.pending.get_mut(&range) {
            pending.in_flight = false;
            if let Some((_, due)) = pending.complete.as_mut() {
                *due = Some(now_ms.saturating_add(self.config.fallback_delay_ms.max(1)));
            }
        }
    }

    /// Signatures held for `range` and `root`.
    pub fn count(&self, range: EpochRange, root: &Hash32) -> usize {
        self.pending.get(&range).map_or(0, |p| p.by_signer.values().filter(|(r, _)| r == root).count())
    }

    /// Ranges held.
    pub fn pending_ranges(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests;
