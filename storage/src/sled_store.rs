//! [`SledStore`]: the on-disk backend, on sled 0.34.
//!
//! Layout of the store's directory: sled's own files (`conf`, `db`, `blobs/`,
//! `snap.*`) and `meshd.lock`, which this process holds locked while the store
//! is open so that a second process fails fast with [`Error::Locked`].
//!
//! Each [`Tree`] is a sled tree of the same name. A [`Batch`] that touches one
//! tree is a sled batch, one that touches several is a sled transaction over
//! all trees; both are recovered whole or not at all after a crash.
//!
//! # Durability
//!
//! [`Store::flush`] (after every write with [`Durability::EveryWrite`]) calls
//! sled's `flush` and then fsyncs sled's files itself. sled's flush alone is
//! not enough for a power cut: on Linux, sled 0.34 writes its log with
//! `sync_file_range`, which neither persists file metadata (the log's growth)
//! nor flushes the drive's write cache; it writes values too large for its log
//! to `blobs/` files, and its `conf` file, without any sync. So after sled's
//! flush this backend fsyncs the log file (`db`), every blob file it has not
//! synced yet and the `blobs/` directory; on open it fsyncs `conf`, `db` and
//! the store's directory, so that a store created just before a power cut
//! opens again. A SIGKILL loses nothing acknowledged either way (the crash
//! test checks it); the fsyncs are what makes the same hold for a power cut.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::batch::{Batch, Write};
use crate::error::Error;
use crate::schema;
use crate::store::{Durability, Entry, Scan, Store};
use crate::tree::Tree;

/// Name of the lock file in the store's directory; named after meshd so that
/// an operator looking at the directory knows whose lock it is.
pub const LOCK_FILE: &str = "meshd.lock";

/// sled 0.34's log file in the store's directory.
const SLED_LOG_FILE: &str = "db";

/// sled 0.34's configuration file in the store's directory.
const SLED_CONF_FILE: &str = "conf";

/// sled 0.34's directory of values too large for its log.
const SLED_BLOBS_DIR: &str = "blobs";

/// Default size of sled's page cache: 64 MiB. sled's own default (1 GiB)
/// would take all the memory of a 1 GiB Raspberry Pi; 64 MiB holds the
/// reports of several busy epochs, which is what a gateway reads back.
pub const DEFAULT_CACHE_CAPACITY_BYTES: u64 = 64 * 1024 * 1024;

/// How often sled flushes in the background, in ms: sled's default, which
/// bounds what [`Durability::OnFlush`] loses in a crash to about half a second
/// of writes when the caller does not flush itself.
pub const BACKGROUND_FLUSH_MS: u64 = 500;

/// How often opening retries when sled's own file lock is still held although
/// ours was free: a store of this process that was just dropped may still be
/// closing its files on a sled thread. 50 tries 20 ms apart wait one second,
/// far longer than that takes.
const SLED_LOCK_ATTEMPTS: u32 = 50;

/// Pause between two such attempts.
const SLED_LOCK_RETRY_PAUSE: Duration = Duration::from_millis(20);

/// How to open a [`SledStore`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// When writes are acknowledged; default [`Durability::EveryWrite`].
    pub durability: Durability,
    /// Size of sled's page cache in bytes; default [`DEFAULT_CACHE_CAPACITY_BYTES`].
    pub cache_capacity_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options { durability: Durability::EveryWrite, cache_capacity_bytes: DEFAULT_CACHE_CAPACITY_BYTES }
    }
}

/// A store in a directory, on sled.
///
/// Open one per directory and share it (it is `Send + Sync`); a second open of
/// the same directory, from this process or another, fails with
/// [`Error::Locked`] until the first is dropped. Dropping it flushes.
#[derive(Debug)]
pub struct SledStore {
    // Declared before `_lock` so that sled's files are closed before the lock
    // is released.
    trees: Vec<sled::Tree>,
    db: sled::Db,
    path: PathBuf,
    durability: Durability,
    fresh: bool,
    /// sled's log file, opened again to fsync it.
    log: File,
    /// Names of the blob files already fsynced.
    synced_blobs: Mutex<BTreeSet<OsString>>,
    _lock: File,
}

impl SledStore {
    /// Opens the store in directory `path`, creating it when missing, and
    /// checks its schema version (stamping a new store).
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<SledStore, Error> {
        let path = path.as_ref().to_path_buf();
        fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path.join(LOCK_FILE))
            .map_err(|e| Error::io(&path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(Error::Locked { path }),
            Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        let db = open_sled(&path, &options)?;
        let trees = Tree::ALL
            .iter()
            .map(|tree| db.open_tree(tree.name()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| sled_error(&path, e))?;
        let log = File::open(path.join(SLED_LOG_FILE)).map_err(|e| Error::io(&path, e))?;
        let mut store = SledStore {
            trees,
            db,
            path,
            durability: options.durability,
            fresh: false,
            log,
            synced_blobs: Mutex::default(),
            _lock: lock,
        };
        // Make the files sled created or wrote without a sync durable, with
        // their directory entries, before anything is acknowledged.
        store.sync_file(&store.path.join(SLED_CONF_FILE))?;
        store.sync_file(&store.path)?;
        store.sync_files()?;
        store.fresh = schema::check(&store)? == schema::Opened::Fresh;
        Ok(store)
    }

    /// Whether opening created this store (it was empty and got stamped).
    pub fn is_new(&self) -> bool {
        self.fresh
    }

    /// What sled reports as the size of its files, in bytes.
    pub fn size_on_disk(&self) -> Result<u64, Error> {
        self.db.size_on_disk().map_err(|e| self.error(e))
    }

    fn tree(&self, tree: Tree) -> Result<&sled::Tree, Error> {
        self.trees.get(tree.index()).ok_or_else(|| Error::Backend {
            path: self.path.clone(),
            detail: format!("tree `{tree}` was not opened"),
        })
    }

    fn error(&self, e: sled::Error) -> Error {
        sled_error(&self.path, e)
    }

    /// fsyncs one file or directory of the store.
    fn sync_file(&self, path: &Path) -> Result<(), Error> {
        File::open(path).and_then(|f| f.sync_all()).map_err(|e| Error::io(&self.path, e))
    }

    /// fsyncs sled's log file and the blob files not synced yet (see the
    /// module documentation for why sled's flush is not enough).
    fn sync_files(&self) -> Result<(), Error> {
        self.log.sync_all().map_err(|e| Error::io(&self.path, e))?;
        let blobs_dir = self.path.join(SLED_BLOBS_DIR);
        let mut names = BTreeSet::new();
        for entry in fs::read_dir(&blobs_dir).map_err(|e| Error::io(&self.path, e))? {
            names.insert(entry.map_err(|e| Error::io(&self.path, e))?.file_name());
        }
        let mut synced = self.synced_blobs.lock().unwrap_or_else(PoisonError::into_inner);
        // Forget blobs sled has removed, so the set stays as small as the directory.
        synced.retain(|name| names.contains(name));
        let mut any_new = false;
        for name in names {
            if !synced.contains(&name) {
                match File::open(blobs_dir.join(&name)).and_then(|f| f.sync_all()) {
                    Ok(()) => {}
                    // Removed by sled since the listing: nothing to keep.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::io(&self.path, e)),
                }
                synced.insert(name);
                any_new = true;
            }
        }
        if any_new {
            self.sync_file(&blobs_dir)?;
        }
        Ok(())
    }

    fn acknowledge(&self) -> Result<(), Error> {
        match self.durability {
            Durability::EveryWrite => self.flush(),
            Durability::OnFlush => Ok(()),
        }
    }
}

fn open_sled(path: &Path, options: &Options) -> Result<sled::Db, Error> {
    let config = sled::Config::new()
        .path(path)
        .cache_capacity(options.cache_capacity_bytes)
        .flush_every_ms(Some(BACKGROUND_FLUSH_MS));
    let mut attempt = 1;
    loop {
        match config.open() {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(e)) if is_sled_lock_error(&e) => {
                if attempt >= SLED_LOCK_ATTEMPTS {
                    return Err(Error::Locked { path: path.to_path_buf() });
                }
                attempt += 1;
                thread::sleep(SLED_LOCK_RETRY_PAUSE);
            }
            Err(e) => return Err(sled_error(path, e)),
        }
    }
}

/// sled 0.34 reports a held file lock as an `Other` I/O error with this text.
fn is_sled_lock_error(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Other && e.to_string().contains("could not acquire lock")
}

fn sled_error(path: &Path, e: sled::Error) -> Error {
    let path = path.to_path_buf();
    match e {
        sled::Error::Io(source) => Error::io(path, source),
        sled::Error::Corruption { at, .. } => Error::Corrupt {
            path,
            detail: match at {
                Some(at) => format!("sled found a damaged entry at {at:?}"),
                None => "sled found a damaged entry".to_owned(),
            },
        },
        sled::Error::Unsupported(detail) => Error::Backend { path, detail: format!("unsupported: {detail}") },
        sled::Error::ReportableBug(detail) => Error::Backend { path, detail: format!("sled bug: {detail}") },
        sled::Error::CollectionNotFound(name) => {
            Error::Backend { path, detail: format!("sled tree {name:?} not found") }
        }
    }
}

impl Store for SledStore {
    fn path(&self) -> &Path {
        &self.path
    }

    fn durability(&self) -> Durability {
        self.durability
    }

    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        let value = self.tree(tree)?.get(key).map_err(|e| self.error(e))?;
        Ok(value.map(|v| v.to_vec()))
    }

    fn scan(&self, tree: Tree, scan: &Scan) -> Result<Vec<Entry>, Error> {
        if scan.is_empty_range() {
            return Ok(Vec::new());
        }
        let iter = self.tree(tree)?.range::<Vec<u8>, _>((scan.start.clone(), scan.end.clone()));
        let limit = scan.limit.unwrap_or(usize::MAX);
        let entry = |item: sled::Result<(sled::IVec, sled::IVec)>| {
            item.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(|e| self.error(e))
        };
        if scan.reverse {
            iter.rev().take(limit).map(entry).collect()
        } else {
            iter.take(limit).map(entry).collect()
        }
    }

    fn apply(&self, batch: &Batch) -> Result<(), Error> {
        let Some(first) = batch.writes().first() else {
            return Ok(());
        };
        let one_tree = batch.writes().iter().all(|w| w.tree() == first.tree());
        if one_tree {
            let mut sled_batch = sled::Batch::default();
            for write in batch.writes() {
                match write {
                    Write::Put { key, value, .. } => sled_batch.insert(key.as_slice(), value.as_slice()),
                    Write::Delete { key, .. } => sled_batch.remove(key.as_slice()),
                }
            }
            self.tree(first.tree())?.apply_batch(sled_batch).map_err(|e| self.error(e))?;
        } else {
            let result = self.trees.as_slice().transaction(|views| {
                for write in batch.writes() {
                    let Some(view) = views.get(write.tree().index()) else {
                        return Err(ConflictableTransactionError::Abort(write.tree()));
                    };
                    match write {
                        Write::Put { key, value, .. } => view.insert(key.as_slice(), value.as_slice())?,
                        Write::Delete { key, .. } => view.remove(key.as_slice())?,
                    };
                }
                Ok(())
            });
            match result {
                Ok(()) => {}
                Err(TransactionError::Storage(e)) => return Err(self.error(e)),
                Err(TransactionError::Abort(tree)) => {
                    return Err(Error::Backend {
                        path: self.path.clone(),
                        detail: format!("tree `{tree}` missing from a transaction"),
                    });
                }
            }
        }
        self.acknowledge()
    }

    fn insert_if_absent(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        let swapped =
            self.tree(tree)?.compare_and_swap(key, None::<&[u8]>, Some(value)).map_err(|e| self.error(e))?;
        // Flushed in both cases: the existing value may come from a write that
        // is not durable yet (`Durability::OnFlush`), and the caller acts on it.
        self.flush()?;
        match swapped {
            Ok(()) => Ok(None),
            Err(conflict) => match conflict.current {
                Some(current) => Ok(Some(current.to_vec())),
                // Unreachable by sled's contract (`None` was expected and not
                // found), but report it rather than claim a write.
                None => Err(Error::Backend {
                    path: self.path.clone(),
                    detail: "compare-and-swap failed without a current value".to_owned(),
                }),
            },
        }
    }

    fn flush(&self) -> Result<(), Error> {
        self.db.flush().map_err(|e| self.error(e))?;
        self.sync_files()
    }
}
