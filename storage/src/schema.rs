//! The schema version: checked on every open, stamped on a fresh store.
//!
//! The version covers everything a build assumes about stored bytes: the trees
//! and their key layouts ([`crate::key`]) and the record encodings
//! ([`crate::record`], and the envelope encoding of the protocol crate). A
//! change to any of them bumps [`SCHEMA_VERSION`] and adds a step to
//! [`migrate`], or documents why old stores are refused.

use crate::error::Error;
use crate::key::SCHEMA_VERSION_KEY;
use crate::record::Record;
use crate::store::{Scan, Store};
use crate::tree::Tree;

/// The schema version this build reads and writes. Version 1 is the first
/// layout; there is nothing older to migrate from.
pub const SCHEMA_VERSION: u32 = 1;

/// What opening found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Opened {
    /// The store was empty and is now stamped with [`SCHEMA_VERSION`].
    Fresh,
    /// The store had data of [`SCHEMA_VERSION`] (possibly just migrated).
    Current,
}

/// Checks the stored schema version, stamping an empty store and migrating
/// an older one. Called by every backend when it opens a store.
pub(crate) fn check(store: &dyn Store) -> Result<Opened, Error> {
    let found = match store.get(Tree::Meta, SCHEMA_VERSION_KEY)? {
        Some(bytes) => decode_version(store, &bytes)?,
        None => {
            for tree in Tree::ALL {
                if !store.scan(tree, &Scan::all().limit(1))?.is_empty() {
                    return Err(Error::SchemaMissing { path: store.path().to_path_buf() });
                }
            }
            let stamp = SCHEMA_VERSION.to_bytes().map_err(Error::Encode)?;
            return match store.insert_if_absent(Tree::Meta, SCHEMA_VERSION_KEY, &stamp)? {
                None => Ok(Opened::Fresh),
                // Stamped concurrently by another handle: check that stamp instead.
                Some(bytes) => check_version(store, decode_version(store, &bytes)?).map(|()| Opened::Current),
            };
        }
    };
    check_version(store, found)?;
    Ok(Opened::Current)
}

fn decode_version(store: &dyn Store, bytes: &[u8]) -> Result<u32, Error> {
    u32::from_bytes(bytes).map_err(|source| Error::BadRecord {
        path: store.path().to_path_buf(),
        tree: Tree::Meta,
        key: crate::error::hex_key(SCHEMA_VERSION_KEY),
        source,
    })
}

fn check_version(store: &dyn Store, found: u32) -> Result<(), Error> {
    if found > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew {
            path: store.path().to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found < SCHEMA_VERSION {
        migrate(store, found)?;
    }
    Ok(())
}

/// Brings a store of schema `from` up to [`SCHEMA_VERSION`], one version at
/// a time, each step one atomic [`Batch`](crate::Batch) that also writes the
/// new version (so a crash mid-migration leaves a consistent older store).
///
/// No older version exists yet, so every older version is refused. A future
/// version 2 adds `1 => { migrate_1_to_2(store)?; from = 2 }` to the loop.
fn migrate(store: &dyn Store, from: u32) -> Result<(), Error> {
    Err(Error::SchemaTooOld { path: store.path().to_path_buf(), found: from, supported: SCHEMA_VERSION })
}
