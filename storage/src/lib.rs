//! meshd's persistent state: reports, beacons, meter state, finalized
//! summaries, the consensus vote log and anchors.
//!
//! # Using it
//!
//! Open one [`Store`] at startup — a [`SledStore`] on disk, or a
//! [`MemoryStore`] in tests and the simulator — and share it. Opening checks
//! the schema version ([`SCHEMA_VERSION`]): a new store is stamped, a store
//! written by a newer meshd is refused with [`Error::SchemaTooNew`].
//!
//! ```
//! use meshd_protocol::geo::Region;
//! use meshd_storage::key::{Step, VoteKey};
//! use meshd_storage::{Batch, MemoryStore, MeterState, Store, StoreExt, VoteOutcome};
//! # fn main() -> Result<(), meshd_storage::Error> {
//! // On a gateway: SledStore::open("/var/lib/meshd/store", Options::default())?
//! let store = MemoryStore::new();
//!
//! // Typed reads and writes; records that must land together go in one batch.
//! let meter = meshd_protocol::MeterId([7; 32]);
//! let mut batch = Batch::new();
//! batch.put_meter_state(&meter, &MeterState { last_sequence: 1, ..MeterState::default() })?;
//! store.apply(&batch)?;
//! assert_eq!(store.meter_state(&meter)?.map(|s| s.last_sequence), Some(1));
//!
//! // Persist a vote before sending it; never sign two for the same step.
//! let key = VoteKey { region: Region(0x85283473fffffff), epoch: 9, round: 0, step: Step::Prevote };
//! assert_eq!(store.record_vote(&key, b"signed vote A")?, VoteOutcome::Recorded);
//! assert_eq!(store.record_vote(&key, b"signed vote B")?, VoteOutcome::Conflict(b"signed vote A".to_vec()));
//! # Ok(())
//! # }
//! ```
//!
//! # Layers
//!
//! - [`Store`]: raw bytes in [`Tree`]s — `get`, `scan`, atomic [`Batch`]es,
//!   `insert_if_absent`, `flush`. Backends implement only this.
//! - [`StoreExt`] and the typed methods of [`Batch`]: records
//!   ([`record`]), encoded only by [`meshd_protocol::codec`], under keys laid
//!   out by [`key`] (big-endian, so scans list entries in order). Damaged
//!   bytes give [`Error::BadRecord`] or [`Error::BadKey`], never a panic.
//!
//! # Acknowledgement and durability
//!
//! A write is *acknowledged* when its method returns `Ok`. It is then visible
//! to every read, and atomic: a [`Batch`] is there whole or not at all, also
//! after a crash. With [`Durability::EveryWrite`] (the default) an
//! acknowledged write is also durable — the backend has written and fsynced
//! it — and survives a crash or power cut. With [`Durability::OnFlush`] it is
//! durable once a later [`Store::flush`] returns `Ok`. Recording a vote
//! ([`StoreExt::record_vote`], on [`Store::insert_if_absent`]) is durable on
//! return in both modes. A write that returns an error is not acknowledged: it
//! may or may not have reached the disk, so act as if it had not.
//!
//! [`MemoryStore`] treats every applied write as durable: its
//! [`restart`](MemoryStore::restart) keeps everything.
#![deny(missing_docs)]

mod batch;
mod error;
pub mod key;
mod memory;
pub mod record;
mod schema;
pub mod sled_store;
mod store;
mod tree;
mod typed;

pub use batch::{Batch, Write};
pub use error::Error;
pub use memory::MemoryStore;
pub use record::{AnchorRecord, AnchorSet, FinalizedSummary, MeterState, Settlement};
pub use schema::SCHEMA_VERSION;
pub use sled_store::{Options, SledStore};
pub use store::{Durability, Entry, Scan, Store};
pub use tree::Tree;
pub use typed::{StoreExt, VoteOutcome};
