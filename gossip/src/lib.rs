//! meshd's libp2p mesh: how gateways find each other, get through NATs, gossip
//! signed envelopes and fetch reports by id.
//!
//! This crate is IO. The node's logic stays in the pure crates and talks to it
//! through a small API:
//!
//! 1. [`new`] builds the swarm from the gateway's key, a [`Config`] and a
//!    [`prometheus_client::registry::Registry`] owned by the caller. It
//!    returns a [`Client`], a bounded receiver of [`Event`]s and the
//!    [`EventLoop`].
//! 2. Spawn [`EventLoop::run`] with a
//!    [`CancellationToken`](tokio_util::sync::CancellationToken); cancelling it
//!    shuts the loop down.
//! 3. [`Client::subscribe`] to the region's topic and [`Topic::Global`];
//!    [`Client::publish`] encoded envelopes.
//! 4. Drain the events. Each [`Event::MessageReceived`] already passed the
//!    cheap checks (size, envelope structure, the sender's rate, duplicates by
//!    id); the node checks signature and rules and answers with
//!    [`Client::report_validation`]. Only accepted messages are forwarded;
//!    rejected ones cost their sender gossipsub score (see [`scoring`]).
//! 5. Answer [`Event::FetchRequested`] through its [`FetchResponder`]; ask
//!    peers with [`Client::fetch`].
//!
//! ```no_run
//! # async fn run(key: meshd_protocol::keys::Keypair) -> Result<(), Box<dyn std::error::Error>> {
//! let mut registry = prometheus_client::registry::Registry::default();
//! let (client, mut events, event_loop) = meshd_gossip::new(&key, meshd_gossip::Config::default(), &mut registry)?;
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! tokio::spawn(event_loop.run(shutdown.clone()));
//! client.subscribe(meshd_gossip::Topic::Global).await?;
//! while let Some(event) = events.recv().await {
//!     if let meshd_gossip::Event::MessageReceived { id, envelope, .. } = event {
//!         // … verify `envelope`, then:
//!         client.report_validation(id, meshd_gossip::Verdict::Accept).await?;
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! What runs underneath: TCP and QUIC with noise and yamux (or the memory
//! transport for simulations), DNS, Kademlia, identify, ping, mDNS, AutoNAT v2,
//! circuit relay v2 (client, and server when configured), DCUtR hole punching,
//! gossipsub v1.1 with peer scoring, and the fetch and decision
//! request-response protocols. A closed mesh whose overlay is configured (a
//! simulation on the memory transport) can leave out Kademlia
//! ([`config::KademliaMode::Off`]), the AutoNAT client and the relay client
//! with DCUtR; the daemon runs them all. `docs/protocol.md` specifies the
//! wire for other implementations.
#![deny(missing_docs)]

pub mod behaviour;
pub mod client;
pub mod config;
pub mod decision;
pub mod event;
mod event_loop;
pub mod fetch;
pub mod metrics;
mod rate;
pub mod scoring;
pub mod topic;
pub mod transport;

use libp2p::{Swarm, identity};
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;

pub use client::{Client, FetchError, Fetched, PublishError, Snapshot, Stopped, SubscribeError};
pub use config::{Config, ConfigError};
pub use event::{Event, FetchResponder, Reachability, Verdict};
pub use event_loop::EventLoop;
pub use libp2p::{Multiaddr, PeerId};
pub use topic::Topic;

/// Why the gossip layer could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NewError {
    /// The config is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The gateway key could not be turned into a libp2p key.
    #[error("the gateway key is not a valid ed25519 key for libp2p: {0}")]
    Key(#[from] identity::DecodingError),
    /// The transport could not be built.
    #[error(transparent)]
    Transport(#[from] transport::TransportError),
    /// A protocol could not be configured.
    #[error(transparent)]
    Behaviour(#[from] behaviour::BehaviourError),
    /// A listen address could not be opened.
    #[error("cannot listen on {address}: {reason}")]
    Listen {
        /// The address from [`Config::listen`].
        address: Multiaddr,
        /// Why.
        reason: String,
    },
}

/// The libp2p identity of a gateway key: the same ed25519 key, so the
/// `PeerId` and the [`meshd_protocol::GatewayId`] name the same gateway.
pub fn libp2p_keypair(
    key: &meshd_protocol::keys::Keypair,
) -> Result<identity::Keypair, identity::DecodingError> {
    let mut secret = key.secret_bytes();
    // The copy is zeroed by libp2p, the original by `Zeroizing` on drop.
    identity::Keypair::ed25519_from_bytes(secret.as_mut_slice())
}

/// The `PeerId` of a gateway id.
pub fn peer_id_of(gateway: &meshd_protocol::GatewayId) -> Result<PeerId, identity::DecodingError> {
    let key = identity::ed25519::PublicKey::try_from_bytes(gateway.as_bytes())?;
    Ok(identity::PublicKey::from(key).to_peer_id())
}

/// Builds the gossip layer; see the crate docs for how to drive it. Must be
/// called inside a tokio runtime (the transports register their sockets).
pub fn new(
    key: &meshd_protocol::keys::Keypair,
    config: Config,
    registry: &mut Registry,
) -> Result<(Client, mpsc::Receiver<Event>, EventLoop), NewError> {
    config.validate()?;
    let key = libp2p_keypair(key)?;
    let peer_id = key.public().to_peer_id();
    let (transport, relay_client) = transport::build(&key, &config, registry)?;
    let behaviour = behaviour::Behaviour::new(&key, &config, relay_client, registry)?;
    let metrics = metrics::Metrics::new(registry);
    let swarm_config = libp2p::swarm::Config::with_tokio_executor()
        .with_idle_connection_timeout(config.idle_connection_timeout);
    let mut swarm = Swarm::new(transport, behaviour, peer_id, swarm_config);
    for address in &config.listen {
        swarm
            .listen_on(address.clone())
            .map_err(|e| NewError::Listen { address: address.clone(), reason: e.to_string() })?;
    }
    for address in &config.external_addresses {
        swarm.add_external_address(address.clone());
    }
    let (commands_tx, commands_rx) = mpsc::channel(config.limits.command_queue);
    let (events_tx, events_rx) = mpsc::channel(config.limits.event_queue);
    let event_loop = EventLoop::new(swarm, config, commands_rx, events_tx, metrics);
    Ok((Client { commands: commands_tx }, events_rx, event_loop))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_and_gateway_id_name_the_same_gateway() {
        for seed in [[1u8; 32], [7u8; 32], [0xfe; 32]] {
            let key = meshd_protocol::keys::Keypair::from_secret(seed);
            let peer_id = libp2p_keypair(&key).expect("ed25519 seed").public().to_peer_id();
            assert_eq!(peer_id.to_string(), key.gateway_id().to_string());
            assert_eq!(peer_id_of(&key.gateway_id()).expect("valid key"), peer_id);
        }
    }
}
