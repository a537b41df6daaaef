//! meshd's EVM client: the Rust side of the contracts in `chain/contracts/`
//! (specified in `docs/chain.md`).
//!
//! # Using it
//!
//! - **Sign.** Committee members sign [`AnchorDomain::anchor_digest`] of the
//!   range and root with `meshd_protocol::keys::AnchorKey::sign_digest`. The
//!   domain is the chain id and the `EpochAnchor` address.
//! - **Submit.** One member (any account may pay) collects a quorum of
//!   [`AnchorSignature`]s, sorts them with [`sort_by_signer`] and calls
//!   [`Anchorer::submit`], which is idempotent (a landed root is
//!   [`AnchorOutcome::AlreadyAnchored`]), retries RPC failures with backoff,
//!   waits for confirmations and re-submits when the anchoring block is
//!   reorganised away. What to do next is decided by the pure
//!   [`decision::decide`]; contract refusals come back as typed
//!   [`AnchorRejection`]s.
//! - **Read the registry.** [`RegistryReader`] reads single gateways and
//!   meters, or rebuilds the whole registry ([`RegistryView`]) from its events.
//! - **Deploy for development.** [`deploy_dev`] deploys and wires every
//!   contract on anvil or a test net and returns the addresses.
//!
//! ```no_run
//! use alloy::primitives::Address;
//! use alloy::signers::local::PrivateKeySigner;
//! use meshd_chain::{AnchorConfig, AnchorDomain, AnchorSignature, Anchorer, EpochRange, Url, sort_by_signer};
//! use meshd_protocol::{Hash32, keys::AnchorKey};
//!
//! async fn anchor_epochs(
//!     url: Url,
//!     anchor: Address,
//!     payer: PrivateKeySigner,
//!     root: Hash32,
//!     keys: &[AnchorKey],
//! ) -> Result<(), Box<dyn std::error::Error>> {
//!     let domain = AnchorDomain { chain_id: 31337, verifying_contract: meshd_protocol::keys::EvmAddress(anchor.into_array()) };
//!     let range = EpochRange { from: 0, to: 3 };
//!     let digest = domain.anchor_digest(range, &root);
//!     let mut signatures = Vec::new();
//!     for key in keys {
//!         signatures.push(AnchorSignature { signer: key.address(), signature: key.sign_digest(&digest.0)? });
//!     }
//!     sort_by_signer(&mut signatures);
//!     let anchorer = Anchorer::new(url, anchor, payer, AnchorConfig::default());
//!     let outcome = anchorer.submit(range, root, &signatures).await?;
//!     println!("anchored in block {}", outcome.block());
//!     Ok(())
//! }
//! ```

#![deny(missing_docs)]

pub mod anchorer;
pub mod bindings;
pub mod collector;
pub mod committee;
pub mod decision;
pub mod deploy;
/// The EIP-712 digests, shared with the node: see [`meshd_protocol::anchor`].
pub use meshd_protocol::anchor as digest;
pub mod proof;
pub mod registry;
pub mod rejection;
pub mod retry;
pub mod service;

pub use alloy::transports::http::reqwest::Url;
pub use anchorer::{AnchorConfig, AnchorOutcome, AnchorSignature, Anchorer, SubmitError, sort_by_signer};
pub use collector::{Collector, CollectorConfig, Offered, Refused, Submission, sign_anchor};
pub use committee::{AnchorCommittee, CommitteeError, anchor_committee};
pub use deploy::{CommitteeMember, DeployError, Deployment, DevDeployConfig, deploy_dev};
pub use digest::{AnchorDomain, EpochRange, quorum};
pub use registry::{Gateway, Meter, RegistryError, RegistryEvent, RegistryReader, RegistryView};
pub use rejection::AnchorRejection;
pub use retry::RetryPolicy;
pub use service::{AnchorService, ServiceEvent, ServiceInput};
