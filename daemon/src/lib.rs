//! The library half of `meshd`: the daemon's IO modules, built as a library
//! so that integration tests and examples drive them as the binary does.
//!
//! - [`gateway`]: `meshd run` — the node driven by gossip, sled, the clock
//!   and the local API, with the synthetic source for demo meshes.
//! - [`ingest`]: radio ingest (Semtech UDP packet forwarder, beacon frames).
//! - [`clock`]: the daemon's one clock.

pub mod clock;
pub mod gateway;
pub mod ingest;
