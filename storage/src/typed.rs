//! The typed API: records in, records out, keys built for you.
//!
//! Reads are methods of [`StoreExt`], which every [`Store`] has. Writes are
//! methods of [`Batch`] (so that records that must land together go in one
//! batch), with one-record shortcuts on [`StoreExt`].

use std::ops::Bound;

use meshd_protocol::codec;
use meshd_protocol::envelope::Envelope;
use meshd_protocol::geo::Region;
use meshd_protocol::message::BeaconId;
use meshd_protocol::{Hash32, MeterId};

use crate::batch::Batch;
use crate::error::{Error, hex_key};
use crate::key::{self, SCHEMA_VERSION_KEY, VoteKey};
use crate::record::{AnchorRecord, AnchorSet, FinalizedSummary, MeterState, Record, Settlement};
use crate::store::{Entry, Scan, Store};
use crate::tree::Tree;

/// What [`StoreExt::record_vote`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VoteOutcome {
    /// The vote is now recorded, durably: it may be sent.
    Recorded,
    /// These exact bytes were recorded before (for instance before a restart):
    /// they may be sent again.
    AlreadyRecorded,
    /// Another vote is recorded for the same region, epoch, round and step.
    /// The new one must not be sent; the recorded one (returned) may be.
    Conflict(Vec<u8>),
}

impl Batch {
    /// Adds a report (any signed envelope) under `region`, `epoch` and its id;
    /// returns the id.
    pub fn put_report(&mut self, region: Region, epoch: u64, report: &Envelope) -> Result<Hash32, Error> {
        let id = report.id().map_err(Error::Encode)?;
        let bytes = codec::encode_envelope(report).map_err(Error::Encode)?;
        self.put(Tree::Reports, key::report(region, epoch, &id), bytes);
        Ok(id)
    }

    /// Adds the delete of one report.
    pub fn delete_report(&mut self, region: Region, epoch: u64, id: &Hash32) -> &mut Self {
        self.delete(Tree::Reports, key::report(region, epoch, id))
    }

    /// Adds a beacon report under `epoch`, `beacon` and its id; returns the id.
    /// It is not added to the reports tree: add it there too with
    /// [`Batch::put_report`] when the region's reports should list it.
    pub fn put_beacon(&mut self, epoch: u64, beacon: &BeaconId, report: &Envelope) -> Result<Hash32, Error> {
        let id = report.id().map_err(Error::Encode)?;
        let bytes = codec::encode_envelope(report).map_err(Error::Encode)?;
        self.put(Tree::Beacons, key::beacon(epoch, beacon, &id), bytes);
        Ok(id)
    }

    /// Adds a meter's state.
    pub fn put_meter_state(&mut self, meter: &MeterId, state: &MeterState) -> Result<&mut Self, Error> {
        let bytes = state.to_bytes().map_err(Error::Encode)?;
        Ok(self.put(Tree::Meters, key::meter(meter), bytes))
    }

    /// Adds a finalized summary under its region and epoch, refusing a
    /// certificate that is for another summary.
    pub fn put_summary(&mut self, finalized: &FinalizedSummary) -> Result<&mut Self, Error> {
        finalized.check_consistent().map_err(Error::Inconsistent)?;
        let bytes = finalized.to_bytes().map_err(Error::Encode)?;
        let key = key::region_epoch(finalized.summary.region, finalized.summary.epoch);
        Ok(self.put(Tree::Summaries, key, bytes))
    }

    /// Adds what a summary settled under its region and epoch. Pair it with
    /// the summary ([`Batch::put_summary`], same batch) and check it first
    /// with [`Settlement::check_against`]: the store takes it as given.
    pub fn put_settlement(&mut self, settlement: &Settlement) -> Result<&mut Self, Error> {
        for (name, len) in [
            ("report ids", settlement.report_ids.len()),
            ("rewards", settlement.rewards.len()),
            ("energy entries", settlement.energy.len()),
        ] {
            if len > crate::record::SETTLEMENT_MAX_ENTRIES {
                return Err(Error::Inconsistent(format!(
                    "a settlement holds at most {} {name}, this one {len}",
                    crate::record::SETTLEMENT_MAX_ENTRIES
                )));
            }
        }
        let bytes = settlement.to_bytes().map_err(Error::Encode)?;
        Ok(self.put(Tree::Settlements, key::region_epoch(settlement.region, settlement.epoch), bytes))
    }

    /// Adds the leaves of a signed anchor root under its range, refusing a
    /// set whose leaves do not rebuild its root or are too many.
    pub fn put_anchor_set(&mut self, set: &AnchorSet) -> Result<&mut Self, Error> {
        if set.leaves.len() > crate::record::ANCHOR_SET_MAX_LEAVES {
            return Err(Error::Inconsistent(format!(
                "an anchor set holds at most {} leaves, this one {}",
                crate::record::ANCHOR_SET_MAX_LEAVES,
                set.leaves.len()
            )));
        }
        set.check().map_err(Error::Inconsistent)?;
        let bytes = set.to_bytes().map_err(Error::Encode)?;
        Ok(self.put(Tree::AnchorSets, key::anchor(set.from_epoch, set.to_epoch), bytes))
    }

    /// Adds an anchor under its epoch range, refusing an empty range.
    pub fn put_anchor(&mut self, anchor: &AnchorRecord) -> Result<&mut Self, Error> {
        if anchor.end_epoch <= anchor.start_epoch {
            return Err(Error::Inconsistent(format!(
                "an anchor must cover at least one epoch, this one covers {}..{}",
                anchor.start_epoch, anchor.end_epoch
            )));
        }
        let bytes = anchor.to_bytes().map_err(Error::Encode)?;
        Ok(self.put(Tree::Anchors, key::anchor(anchor.start_epoch, anchor.end_epoch), bytes))
    }
}

/// Decodes a stored record, naming the tree and key when it is damaged.
fn decode<R: Record>(
    store: &(impl Store + ?Sized),
    tree: Tree,
    key: &[u8],
    bytes: &[u8],
) -> Result<R, Error> {
    R::from_bytes(bytes).map_err(|source| bad_record(store, tree, key, source))
}

fn decode_envelope(
    store: &(impl Store + ?Sized),
    tree: Tree,
    key: &[u8],
    bytes: &[u8],
) -> Result<Envelope, Error> {
    codec::decode_envelope(bytes).map_err(|source| bad_record(store, tree, key, source))
}

fn bad_record(store: &(impl Store + ?Sized), tree: Tree, key: &[u8], source: codec::CodecError) -> Error {
    Error::BadRecord { path: store.path().to_path_buf(), tree, key: hex_key(key), source }
}

fn bad_key(store: &(impl Store + ?Sized), tree: Tree, key: &[u8], reason: &'static str) -> Error {
    Error::BadKey { path: store.path().to_path_buf(), tree, key: hex_key(key), reason }
}

/// Decodes `(report id, envelope)` pairs from a scan, the id taken from the key.
fn id_envelopes(
    store: &(impl Store + ?Sized),
    tree: Tree,
    entries: Vec<Entry>,
    id_of: fn(&[u8]) -> Option<Hash32>,
) -> Result<Vec<(Hash32, Envelope)>, Error> {
    entries
        .into_iter()
        .map(|(key, value)| {
            let id = id_of(&key).ok_or_else(|| bad_key(store, tree, &key, "wrong length"))?;
            Ok((id, decode_envelope(store, tree, &key, &value)?))
        })
        .collect()
}

/// Typed reads and one-record writes, on every [`Store`].
///
/// A one-record write is a [`Batch`] of one, acknowledged per the store's
/// [`Durability`](crate::Durability); [`StoreExt::record_vote`] is always durable.
pub trait StoreExt: Store {
    /// Stores one report; returns its id. See [`Batch::put_report`].
    fn put_report(&self, region: Region, epoch: u64, report: &Envelope) -> Result<Hash32, Error> {
        let mut batch = Batch::new();
        let id = batch.put_report(region, epoch, report)?;
        self.apply(&batch)?;
        Ok(id)
    }

    /// The report `id` of `region` and `epoch`.
    fn report(&self, region: Region, epoch: u64, id: &Hash32) -> Result<Option<Envelope>, Error> {
        let key = key::report(region, epoch, id);
        match self.get(Tree::Reports, &key)? {
            Some(bytes) => decode_envelope(self, Tree::Reports, &key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Every report of `region` and `epoch`, in id order.
    fn reports(&self, region: Region, epoch: u64) -> Result<Vec<(Hash32, Envelope)>, Error> {
        let entries = self.scan(Tree::Reports, &Scan::prefix(&key::region_epoch(region, epoch)))?;
        id_envelopes(self, Tree::Reports, entries, key::report_id)
    }

    /// Stores one beacon report; returns its id. See [`Batch::put_beacon`].
    fn put_beacon(&self, epoch: u64, beacon: &BeaconId, report: &Envelope) -> Result<Hash32, Error> {
        let mut batch = Batch::new();
        let id = batch.put_beacon(epoch, beacon, report)?;
        self.apply(&batch)?;
        Ok(id)
    }

    /// Every beacon report of `epoch` claiming `beacon`, in id order (more than
    /// one when someone replayed or forged the beacon id).
    fn beacons(&self, epoch: u64, beacon: &BeaconId) -> Result<Vec<(Hash32, Envelope)>, Error> {
        let entries = self.scan(Tree::Beacons, &Scan::prefix(&key::beacon_prefix(epoch, beacon)))?;
        id_envelopes(self, Tree::Beacons, entries, key::beacon_report_id)
    }

    /// Stores a meter's state.
    fn put_meter_state(&self, meter: &MeterId, state: &MeterState) -> Result<(), Error> {
        let mut batch = Batch::new();
        batch.put_meter_state(meter, state)?;
        self.apply(&batch)
    }

    /// A meter's state, if the meter was seen.
    fn meter_state(&self, meter: &MeterId) -> Result<Option<MeterState>, Error> {
        let key = key::meter(meter);
        match self.get(Tree::Meters, &key)? {
            Some(bytes) => decode(self, Tree::Meters, &key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Stores a finalized summary. See [`Batch::put_summary`].
    fn put_summary(&self, finalized: &FinalizedSummary) -> Result<(), Error> {
        let mut batch = Batch::new();
        batch.put_summary(finalized)?;
        self.apply(&batch)
    }

    /// The finalized summary of `region` and `epoch`.
    fn summary(&self, region: Region, epoch: u64) -> Result<Option<FinalizedSummary>, Error> {
        let key = key::region_epoch(region, epoch);
        match self.get(Tree::Summaries, &key)? {
            Some(bytes) => decode(self, Tree::Summaries, &key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// What the finalized summary of `region` and `epoch` settled, when this
    /// store's gateway judged it (see [`Settlement`]).
    fn settlement(&self, region: Region, epoch: u64) -> Result<Option<Settlement>, Error> {
        let key = key::region_epoch(region, epoch);
        match self.get(Tree::Settlements, &key)? {
            Some(bytes) => decode(self, Tree::Settlements, &key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// The finalized summary of `region` with the highest epoch.
    fn latest_summary(&self, region: Region) -> Result<Option<FinalizedSummary>, Error> {
        let scan = Scan::prefix(&region.0.to_be_bytes()).reverse().limit(1);
        match self.scan(Tree::Summaries, &scan)?.into_iter().next() {
            Some((key, bytes)) => decode(self, Tree::Summaries, &key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Records `signed_vote` as this member's vote for `key`, unless a vote is
    /// already recorded there, in one atomic, durable step.
    ///
    /// This is the guard against equivocation across crashes: sign, record,
    /// and send only on [`VoteOutcome::Recorded`] or
    /// [`VoteOutcome::AlreadyRecorded`]; on an error send nothing.
    fn record_vote(&self, key: &VoteKey, signed_vote: &[u8]) -> Result<VoteOutcome, Error> {
        Ok(match self.insert_if_absent(Tree::Votes, &key.to_bytes(), signed_vote)? {
            None => VoteOutcome::Recorded,
            Some(existing) if existing == signed_vote => VoteOutcome::AlreadyRecorded,
            Some(existing) => VoteOutcome::Conflict(existing),
        })
    }

    /// The vote recorded for `key`.
    fn vote(&self, key: &VoteKey) -> Result<Option<Vec<u8>>, Error> {
        self.get(Tree::Votes, &key.to_bytes())
    }

    /// Every vote recorded for `region` and `epoch`, by round then step: what
    /// a restarted member replays to its consensus engine.
    fn votes(&self, region: Region, epoch: u64) -> Result<Vec<(VoteKey, Vec<u8>)>, Error> {
        self.scan(Tree::Votes, &Scan::prefix(&key::region_epoch(region, epoch)))?
            .into_iter()
            .map(|(key, value)| {
                let vote_key = VoteKey::from_bytes(&key)
                    .ok_or_else(|| bad_key(self, Tree::Votes, &key, "wrong length or unknown step"))?;
                Ok((vote_key, value))
            })
            .collect()
    }

    /// Stores an anchor. See [`Batch::put_anchor`].
    fn put_anchor(&self, anchor: &AnchorRecord) -> Result<(), Error> {
        let mut batch = Batch::new();
        batch.put_anchor(anchor)?;
        self.apply(&batch)
    }

    /// The anchor of exactly `start_epoch..end_epoch`.
    fn anchor(&self, start_epoch: u64, end_epoch: u64) -> Result<Option<AnchorRecord>, Error> {
        let key = key::anchor(start_epoch, end_epoch);
        match self.get(Tree::Anchors, &key)? {
            Some(bytes) => decode(self, Tree::Anchors, &key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// The anchor whose range contains `epoch`. Anchors do not overlap; if
    /// some did, only the one starting last at or before `epoch` is considered.
    fn anchor_covering(&self, epoch: u64) -> Result<Option<AnchorRecord>, Error> {
        let scan =
            Scan::range(Bound::Unbounded, Bound::Included(key::anchor(epoch, u64::MAX).to_vec())).reverse();
        for (key, bytes) in self.scan(Tree::Anchors, &scan.limit(1))? {
            let anchor: AnchorRecord = decode(self, Tree::Anchors, &key, &bytes)?;
            if anchor.start_epoch <= epoch && epoch < anchor.end_epoch {
                return Ok(Some(anchor));
            }
        }
        Ok(None)
    }

    /// Stores the leaves of a signed anchor root. See [`Batch::put_anchor_set`].
    fn put_anchor_set(&self, set: &AnchorSet) -> Result<(), Error> {
        let mut batch = Batch::new();
        batch.put_anchor_set(set)?;
        self.apply(&batch)
    }

    /// The anchor set whose range contains `epoch` (ranges never overlap).
    fn anchor_set_covering(&self, epoch: u64) -> Result<Option<AnchorSet>, Error> {
        let scan = Scan::range(Bound::Unbounded, Bound::Included(key::anchor(epoch, u64::MAX).to_vec()))
            .reverse()
            .limit(1);
        for (key, bytes) in self.scan(Tree::AnchorSets, &scan)? {
            let set: AnchorSet = decode(self, Tree::AnchorSets, &key, &bytes)?;
            if set.from_epoch <= epoch && epoch <= set.to_epoch {
                return Ok(Some(set));
            }
        }
        Ok(None)
    }

    /// The anchor set with the latest range, if any.
    fn latest_anchor_set(&self) -> Result<Option<AnchorSet>, Error> {
        match self.scan(Tree::AnchorSets, &Scan::all().reverse().limit(1))?.into_iter().next() {
            Some((key, bytes)) => decode(self, Tree::AnchorSets, &key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// The anchors starting at `from_epoch` or later, in epoch order, at most `limit`.
    fn anchors(&self, from_epoch: u64, limit: usize) -> Result<Vec<AnchorRecord>, Error> {
        let scan = Scan::range(Bound::Included(key::anchor(from_epoch, 0).to_vec()), Bound::Unbounded);
        self.scan(Tree::Anchors, &scan.limit(limit))?
            .into_iter()
            .map(|(key, bytes)| decode(self, Tree::Anchors, &key, &bytes))
            .collect()
    }

    /// The schema version stamped in the store.
    fn schema_version(&self) -> Result<Option<u32>, Error> {
        match self.get(Tree::Meta, SCHEMA_VERSION_KEY)? {
            Some(bytes) => decode(self, Tree::Meta, SCHEMA_VERSION_KEY, &bytes).map(Some),
            None => Ok(None),
        }
    }
}

impl<S: Store + ?Sized> StoreExt for S {}
