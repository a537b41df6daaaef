//! The [`Store`] trait: the raw-bytes interface every backend implements.

use std::fmt;
use std::ops::Bound;
use std::path::Path;

use crate::batch::Batch;
use crate::error::Error;
use crate::tree::Tree;

/// A key and its value, as a scan returns them.
pub type Entry = (Vec<u8>, Vec<u8>);

/// When a write is *acknowledged*, i.e. when its method returns `Ok`.
///
/// Whatever the mode, a write is atomic (a [`Batch`] lands whole or not at
/// all, also across a crash) and visible to reads as soon as its method
/// returns. The mode decides whether it is also durable by then.
/// [`Store::insert_if_absent`] is durable on return in every mode: it is the
/// primitive behind "persist a vote before sending it".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Every write returns only after it is on stable storage (the backend
    /// flushed and fsynced it): an acknowledged write survives a crash or a
    /// power cut. The default, and what consensus state needs.
    #[default]
    EveryWrite,
    /// Writes return once applied in memory. They become durable when a later
    /// [`Store::flush`] returns `Ok` (sled also flushes in the background every
    /// [`crate::sled_store::BACKGROUND_FLUSH_MS`] ms); a crash loses the writes
    /// after the last flush, but never part of a batch. For bulk data that peers
    /// can send again (gossiped reports), with one `flush` per burst.
    OnFlush,
}

/// Which entries of a tree a [`Store::scan`] returns: keys within a range, in
/// ascending order (or descending with [`Scan::reverse`]), at most
/// [`Scan::limit`] of them.
///
/// An empty or inverted range returns no entry; it is never an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scan {
    /// The lower bound of the keys.
    pub start: Bound<Vec<u8>>,
    /// The upper bound of the keys.
    pub end: Bound<Vec<u8>>,
    /// Whether to list from the upper bound down.
    pub reverse: bool,
    /// The most entries to return; `None` for all.
    pub limit: Option<usize>,
}

impl Scan {
    /// Every entry of the tree.
    pub fn all() -> Self {
        Scan::range(Bound::Unbounded, Bound::Unbounded)
    }

    /// The entries whose key lies within the bounds.
    pub fn range(start: Bound<Vec<u8>>, end: Bound<Vec<u8>>) -> Self {
        Scan { start, end, reverse: false, limit: None }
    }

    /// The entries whose key starts with `prefix`.
    pub fn prefix(prefix: &[u8]) -> Self {
        let end = match prefix_successor(prefix) {
            Some(successor) => Bound::Excluded(successor),
            None => Bound::Unbounded,
        };
        Scan::range(Bound::Included(prefix.to_vec()), end)
    }

    /// Lists from the upper bound down.
    pub fn reverse(mut self) -> Self {
        self.reverse = true;
        self
    }

    /// Returns at most `limit` entries.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Whether no key can lie within the bounds (which `BTreeMap::range` would
    /// refuse with a panic).
    pub fn is_empty_range(&self) -> bool {
        match (&self.start, &self.end) {
            (Bound::Unbounded, _) | (_, Bound::Unbounded) => false,
            (Bound::Included(start), Bound::Included(end)) => start > end,
            (Bound::Included(start), Bound::Excluded(end))
            | (Bound::Excluded(start), Bound::Included(end))
            | (Bound::Excluded(start), Bound::Excluded(end)) => start >= end,
        }
    }

    /// Whether `key` lies within the bounds.
    pub fn contains(&self, key: &[u8]) -> bool {
        let above = match &self.start {
            Bound::Unbounded => true,
            Bound::Included(start) => key >= start.as_slice(),
            Bound::Excluded(start) => key > start.as_slice(),
        };
        let below = match &self.end {
            Bound::Unbounded => true,
            Bound::Included(end) => key <= end.as_slice(),
            Bound::Excluded(end) => key < end.as_slice(),
        };
        above && below
    }
}

/// The smallest key greater than every key starting with `prefix`, or `None`
/// when there is none (the prefix is empty or all `0xff`).
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut successor = prefix.to_vec();
    while let Some(last) = successor.pop() {
        if last < u8::MAX {
            successor.push(last + 1);
            return Some(successor);
        }
    }
    None
}

/// A key-value store with one key space per [`Tree`]: the raw-bytes layer.
///
/// Backends: [`SledStore`](crate::SledStore) on disk and
/// [`MemoryStore`](crate::MemoryStore) for tests and simulations. Typed
/// records are read through [`StoreExt`](crate::StoreExt), which every
/// `Store` implements, and written through [`Batch`].
///
/// Reads see every write whose method has returned. Writes are atomic;
/// whether they are also durable when they return is the store's
/// [`Durability`]. No method panics on stored bytes: damage is an [`Error`].
pub trait Store: Send + Sync + fmt::Debug {
    /// Where the store lives, for messages (`:memory:` for the memory backend).
    fn path(&self) -> &Path;

    /// When this store's writes are acknowledged.
    fn durability(&self) -> Durability;

    /// The value under `key` in `tree`.
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, Error>;

    /// The entries of `tree` that `scan` selects, in its order.
    fn scan(&self, tree: Tree, scan: &Scan) -> Result<Vec<Entry>, Error>;

    /// Applies every write of `batch` atomically, in order. Returns once the
    /// batch is acknowledged (see [`Durability`]). An empty batch does nothing.
    fn apply(&self, batch: &Batch) -> Result<(), Error>;

    /// Stores `value` under `key` unless the key already has a value, in one
    /// atomic step: returns `None` when this call stored it, or the value
    /// already there (which is left unchanged). Durable on return in every
    /// [`Durability`] mode.
    fn insert_if_absent(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, Error>;

    /// Makes every acknowledged-or-not write so far durable; returns once it is.
    fn flush(&self) -> Result<(), Error>;

    /// Sets one key (a batch of one write).
    fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), Error> {
        let mut batch = Batch::new();
        batch.put(tree, key, value);
        self.apply(&batch)
    }

    /// Removes one key (a batch of one write).
    fn delete(&self, tree: Tree, key: &[u8]) -> Result<(), Error> {
        let mut batch = Batch::new();
        batch.delete(tree, key);
        self.apply(&batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_scan_ends_before_the_next_prefix() {
        let scan = Scan::prefix(&[1, 0xff]);
        assert_eq!(scan.end, Bound::Excluded(vec![2]));
        assert!(scan.contains(&[1, 0xff, 0xff, 0xff]));
        assert!(!scan.contains(&[2]));
        assert!(!scan.contains(&[1]));
    }

    #[test]
    fn prefix_of_all_ff_bytes_is_unbounded_above() {
        assert_eq!(Scan::prefix(&[0xff, 0xff]).end, Bound::Unbounded);
        assert_eq!(Scan::prefix(&[]).end, Bound::Unbounded);
        assert!(Scan::prefix(&[]).contains(&[]));
    }

    #[test]
    fn inverted_and_empty_ranges_are_recognised() {
        let inverted = Scan::range(Bound::Included(vec![2]), Bound::Included(vec![1]));
        assert!(inverted.is_empty_range());
        let empty = Scan::range(Bound::Excluded(vec![1]), Bound::Excluded(vec![1]));
        assert!(empty.is_empty_range());
        let single = Scan::range(Bound::Included(vec![1]), Bound::Included(vec![1]));
        assert!(!single.is_empty_range());
    }
}
