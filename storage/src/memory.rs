//! [`MemoryStore`]: a store in memory, for tests and the simulator.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::batch::{Batch, Write};
use crate::error::Error;
use crate::schema;
use crate::store::{Durability, Entry, Scan, Store};
use crate::tree::Tree;

/// The path a memory store gives in messages.
const MEMORY_PATH: &str = ":memory:";

type Trees = [BTreeMap<Vec<u8>, Vec<u8>>; Tree::ALL.len()];

/// A store in memory with the semantics of a durable one.
///
/// Every applied write counts as durable: [`MemoryStore::restart`] (the
/// simulator's "crash and restart") keeps everything applied, like a disk store
/// whose every write was flushed, and runs the open-time schema check again.
/// Batches are atomic (applied under one lock).
#[derive(Debug)]
pub struct MemoryStore {
    trees: Arc<Mutex<Trees>>,
    fresh: bool,
}

impl MemoryStore {
    /// An empty store, stamped with the current schema version.
    pub fn new() -> MemoryStore {
        let mut store = MemoryStore { trees: Arc::default(), fresh: true };
        // An empty store always passes the check; an error here would be a bug
        // in the check, which the tests of both backends would catch.
        store.fresh = matches!(schema::check(&store), Ok(schema::Opened::Fresh));
        store
    }

    /// Closes this handle and opens the same data again, as a process restart
    /// does: everything applied is kept, and the schema is checked again.
    pub fn restart(self) -> Result<MemoryStore, Error> {
        let MemoryStore { trees, .. } = self;
        let mut store = MemoryStore { trees, fresh: false };
        store.fresh = schema::check(&store)? == schema::Opened::Fresh;
        Ok(store)
    }

    /// Whether opening created this store (it was empty and got stamped).
    pub fn is_new(&self) -> bool {
        self.fresh
    }

    fn lock(&self) -> MutexGuard<'_, Trees> {
        // Nothing that runs under the lock can panic (map inserts, removals and
        // clones; running out of memory aborts), so a poisoned lock cannot hide
        // a half-applied batch.
        self.trees.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl Store for MemoryStore {
    fn path(&self) -> &Path {
        Path::new(MEMORY_PATH)
    }

    fn durability(&self) -> Durability {
        Durability::EveryWrite
    }

    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.lock()[tree.index()].get(key).cloned())
    }

    fn scan(&self, tree: Tree, scan: &Scan) -> Result<Vec<Entry>, Error> {
        if scan.is_empty_range() {
            return Ok(Vec::new());
        }
        let trees = self.lock();
        let range = trees[tree.index()].range::<Vec<u8>, _>((scan.start.clone(), scan.end.clone()));
        let limit = scan.limit.unwrap_or(usize::MAX);
        let clone = |(k, v): (&Vec<u8>, &Vec<u8>)| (k.clone(), v.clone());
        Ok(if scan.reverse {
            range.rev().take(limit).map(clone).collect()
        } else {
            range.take(limit).map(clone).collect()
        })
    }

    fn apply(&self, batch: &Batch) -> Result<(), Error> {
        let mut trees = self.lock();
        for write in batch.writes() {
            let tree = &mut trees[write.tree().index()];
            match write {
                Write::Put { key, value, .. } => {
                    tree.insert(key.clone(), value.clone());
                }
                Write::Delete { key, .. } => {
                    tree.remove(key);
                }
            }
        }
        Ok(())
    }

    fn insert_if_absent(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        let mut trees = self.lock();
        let tree = &mut trees[tree.index()];
        if let Some(existing) = tree.get(key) {
            return Ok(Some(existing.clone()));
        }
        tree.insert(key.to_vec(), value.to_vec());
        Ok(None)
    }

    fn flush(&self) -> Result<(), Error> {
        Ok(())
    }
}
