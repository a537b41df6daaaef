//! [`Error`]: everything that can go wrong opening, reading or writing a store.
//!
//! Every message names the store's path and, where there is one, the fix. A
//! write that returns an error is *not acknowledged*: it may or may not be on
//! disk, and the caller must act as if it were not (in particular, a vote whose
//! recording failed must not be sent).

use std::io;
use std::path::PathBuf;

use meshd_protocol::codec::CodecError;

use crate::tree::Tree;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Another process (or another handle in this process) has the store open.
    #[error(
        "the store at {path} is in use by another process (is another meshd running with the same \
         data directory?): stop that process, or point this one at another storage path"
    )]
    Locked {
        /// The store's directory.
        path: PathBuf,
    },
    /// The operating system refused access to the store's directory or files.
    #[error(
        "permission denied on the store at {path} ({source}): make the directory and the files in it \
         readable and writable by the user meshd runs as (e.g. `chown -R meshd: {path}`)"
    )]
    PermissionDenied {
        /// The store's directory.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// Reading or writing the store's files failed for another reason.
    #[error(
        "I/O error on the store at {path}: {source}; check that the disk is mounted, not full \
         (`df -h {path}`) and healthy"
    )]
    Io {
        /// The store's directory.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The backend found its own files damaged (a checksum did not match).
    #[error(
        "the store at {path} is corrupt ({detail}): restore the directory from a backup, or move it \
         away so that meshd starts with an empty store and syncs again from its peers"
    )]
    Corrupt {
        /// The store's directory.
        path: PathBuf,
        /// What the backend reported.
        detail: String,
    },
    /// A stored value could not be decoded as the record its tree holds.
    #[error(
        "the store at {path} holds an unreadable record in tree `{tree}` under key {key}: {source}; \
         the store is damaged or was written by an incompatible build: restore it from a backup, or \
         move it away so that meshd starts with an empty store and syncs again from its peers"
    )]
    BadRecord {
        /// The store's directory.
        path: PathBuf,
        /// The tree of the record.
        tree: Tree,
        /// The key, in hex.
        key: String,
        /// What the codec found.
        source: CodecError,
    },
    /// A stored key does not have the layout its tree uses.
    #[error(
        "the store at {path} holds a malformed key {key} in tree `{tree}` ({reason}); the store is \
         damaged: restore it from a backup, or move it away so that meshd starts with an empty store"
    )]
    BadKey {
        /// The store's directory.
        path: PathBuf,
        /// The tree of the key.
        tree: Tree,
        /// The key, in hex.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A value to store could not be encoded (for instance it exceeds its size limit).
    #[error("cannot store this value: {0}")]
    Encode(#[source] CodecError),
    /// A record to store contradicts itself (for instance a certificate for another summary).
    #[error("refusing to store an inconsistent record: {0}")]
    Inconsistent(String),
    /// The store was written by a newer meshd with a schema this build does not know.
    #[error(
        "the store at {path} has schema version {found}, but this build of meshd reads schema \
         version {supported} at most: the data was written by a newer meshd. Run that newer version (or \
         a later one), or move the directory away to start with an empty store (its data is then \
         synced again from peers)"
    )]
    SchemaTooNew {
        /// The store's directory.
        path: PathBuf,
        /// The version stored in the data.
        found: u32,
        /// The newest version this build reads and writes.
        supported: u32,
    },
    /// The store has an old schema that this build cannot migrate.
    #[error(
        "the store at {path} has schema version {found}, which this build of meshd (schema version \
         {supported}) cannot migrate: open it once with an older meshd release that migrates it, or \
         move the directory away to start with an empty store (its data is then synced again from peers)"
    )]
    SchemaTooOld {
        /// The store's directory.
        path: PathBuf,
        /// The version stored in the data.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// The store holds data but no schema version: it was not written by meshd.
    #[error(
        "the store at {path} holds data but no schema version, so it was not written by meshd (or \
         its meta tree is damaged): check the configured storage path, or move the directory away"
    )]
    SchemaMissing {
        /// The store's directory.
        path: PathBuf,
    },
    /// The backend failed in a way it could not explain further (a bug or misuse).
    #[error("the storage backend failed on the store at {path}: {detail}")]
    Backend {
        /// The store's directory.
        path: PathBuf,
        /// What the backend reported.
        detail: String,
    },
}

impl Error {
    /// Classifies an I/O error on the store at `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Error {
        let path = path.into();
        match source.kind() {
            io::ErrorKind::PermissionDenied => Error::PermissionDenied { path, source },
            _ => Error::Io { path, source },
        }
    }
}

/// `0x`-prefixed lowercase hex of a key, for error messages.
pub(crate) fn hex_key(key: &[u8]) -> String {
    format!("0x{}", hex::encode(key))
}
