//! meshd's protocol core: everything two gateways must agree on, bit for bit.
//!
//! This crate is pure: no async runtime, no sockets, no clock and no randomness
//! of its own. Time and random bytes are arguments; results are values.
//!
//! - [`id`], [`keys`]: gateway and meter identities (ed25519), anchor keys
//!   (secp256k1) and the key file's text format.
//! - [`message`], [`envelope`], [`codec`]: the signed, versioned wire types and
//!   their one encoding, with a size limit per kind.
//! - [`signature`]: single and batch verification with one verdict everywhere.
//! - [`hash`]: keccak256 and [`Hash32`].
//! - [`anchor`]: the EIP-712 digests the anchor committee signs, as the
//!   `EpochAnchor` contract computes them (docs/chain.md §4).
//! - [`merkle`]: keccak256 Merkle trees and proofs, compatible with OpenZeppelin's
//!   `StandardMerkleTree` and `MerkleProof`.
//! - [`epoch`]: the epoch schedule: which epoch a moment is in, open, grace, deciding.
//! - [`geo`]: locations and regions as H3 cells, distances between gateways.
//! - [`beacon`]: the beacon id, derived from a region's previous summary hash.
//! - [`rules`]: witness and meter validity rules, each returning a reason code.
//! - [`reward`]: reward units per beacon and witness, energy to certificates.
//!
//! A receiver decodes with [`codec::decode_envelope`], drops duplicates by
//! [`Envelope::id`], checks signatures with [`signature::verify_envelopes`],
//! then decodes the body with [`Envelope::open`] and applies the rules.
#![deny(missing_docs)]

pub mod anchor;
pub mod beacon;
pub mod codec;
pub mod envelope;
pub mod epoch;
pub mod geo;
pub mod hash;
pub mod id;
pub mod keys;
pub mod merkle;
pub mod message;
pub mod reward;
pub mod rules;
pub mod signature;

pub use envelope::{Domain, Envelope};
pub use hash::{Hash32, keccak256};
pub use id::{GatewayId, MeterId};
