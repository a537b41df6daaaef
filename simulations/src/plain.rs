//! The baseline of real-stack mode: a plain gossipsub node, as a libp2p
//! example would build one, run under the same scenario, load and machine as
//! the meshd stack so the two can be compared in one sitting.
//!
//! Each node is one swarm with one behaviour, gossipsub with libp2p's own
//! message signing and strict validation (every receiver checks the
//! publisher's ed25519 signature inside gossipsub before forwarding),
//! default parameters (mesh degree 6, 1 s heartbeat, no peer scoring), over
//! the memory transport with plaintext authentication and yamux, as the
//! meshd nodes use. Nothing of meshd runs here: no envelope check, no rate
//! limits, no identify, ping or request-response protocols, no metrics.

use futures::StreamExt;
use libp2p::core::transport::MemoryTransport;
use libp2p::core::transport::upgrade::Version;
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity, ValidationMode};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, Swarm, Transport as _, identity, plaintext, yamux};
use meshd_gossip::config::mesh_outbound_min;
use meshd_protocol::keccak256;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::real::{Arrivals, RealError};

/// Commands a plain node's task takes: what the run needs from a node.
pub(crate) enum Command {
    /// Publish these bytes on the topic; answers whether gossipsub took them.
    Publish(Vec<u8>, oneshot::Sender<bool>),
    /// Dials this address; answers whether the swarm took the dial.
    Dial(Multiaddr, oneshot::Sender<bool>),
    /// Answers whether the node has a mesh peer on the topic.
    Meshed(oneshot::Sender<bool>),
}

/// A running plain node.
pub(crate) struct PlainNode {
    /// Its command channel.
    pub(crate) commands: mpsc::Sender<Command>,
    /// Its memory address, with `/p2p/`.
    pub(crate) address: Multiaddr,
}

/// The topic every plain node subscribes to.
fn topic() -> IdentTopic {
    IdentTopic::new("plain-gossipsub-baseline")
}

fn err(node: usize, reason: impl std::fmt::Display) -> RealError {
    RealError::Node { node, reason: reason.to_string() }
}

/// Starts plain node `i` with the given libp2p key.
pub(crate) async fn start(
    i: usize,
    host: &tokio::runtime::Handle,
    secret: [u8; 32],
    mesh: Option<[usize; 3]>,
    arrivals: Arrivals,
    shutdown: CancellationToken,
) -> Result<PlainNode, RealError> {
    let mut secret = secret;
    let key = identity::Keypair::ed25519_from_bytes(&mut secret).map_err(|e| err(i, e))?;
    let peer_id = key.public().to_peer_id();
    let transport = MemoryTransport::new()
        .upgrade(Version::V1Lazy)
        .authenticate(plaintext::Config::new(&key))
        .multiplex(yamux::Config::default())
        .boxed();
    let mut builder = gossipsub::ConfigBuilder::default();
    builder.validation_mode(ValidationMode::Strict);
    if let Some([n, low, high]) = mesh {
        builder.mesh_n(n).mesh_n_low(low).mesh_n_high(high).mesh_outbound_min(mesh_outbound_min(n, low));
    }
    let config = builder.build().map_err(|e| err(i, e))?;
    let mut behaviour: gossipsub::Behaviour =
        gossipsub::Behaviour::new(MessageAuthenticity::Signed(key), config).map_err(|e| err(i, e))?;
    behaviour.subscribe(&topic()).map_err(|e| err(i, e))?;
    // The meshd nodes' idle timeout, so both stacks keep the same connections.
    let idle = meshd_gossip::Config::default().idle_connection_timeout;
    let swarm_config = libp2p::swarm::Config::with_tokio_executor().with_idle_connection_timeout(idle);
    let mut swarm = Swarm::new(transport, behaviour, peer_id, swarm_config);
    let listen: Multiaddr = "/memory/0".parse().map_err(|e| err(i, e))?;
    swarm.listen_on(listen).map_err(|e| err(i, e))?;
    let address = loop {
        match swarm.next().await {
            Some(SwarmEvent::NewListenAddr { address, .. }) => break address,
            Some(_) => {}
            None => return Err(err(i, "never listened")),
        }
    };
    let address: Multiaddr = format!("{address}/p2p/{peer_id}").parse().map_err(|e| err(i, e))?;
    let (commands, receiver) = mpsc::channel(16);
    host.spawn(run(swarm, receiver, arrivals, shutdown));
    Ok(PlainNode { commands, address })
}

async fn run(
    mut swarm: Swarm<gossipsub::Behaviour>,
    mut commands: mpsc::Receiver<Command>,
    arrivals: Arrivals,
    shutdown: CancellationToken,
) {
    let topic = topic();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            command = commands.recv() => match command {
                Some(Command::Publish(bytes, reply)) => {
                    let _ = reply.send(swarm.behaviour_mut().publish(topic.clone(), bytes).is_ok());
                }
                Some(Command::Dial(address, reply)) => {
                    let _ = reply.send(swarm.dial(address).is_ok());
                }
                Some(Command::Meshed(reply)) => {
                    let _ = reply.send(swarm.behaviour().all_mesh_peers().next().is_some());
                }
                None => break,
            },
            event = swarm.select_next_some() => {
                if let SwarmEvent::Behaviour(gossipsub::Event::Message { message, .. }) = event {
                    let id = keccak256(&message.data);
                    if let Ok(mut a) = arrivals.lock() {
                        a.entry(id).or_default().push(Instant::now());
                    }
                }
            }
        }
    }
}
