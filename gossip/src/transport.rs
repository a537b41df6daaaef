//! The transport stack: TCP and QUIC (or memory), DNS, and the relay client.

use std::time::Duration;

use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::upgrade::Version;
use libp2p::core::transport::{Boxed, MemoryTransport, OptionalTransport};
use libp2p::{PeerId, Transport as _, dns, identity, noise, plaintext, quic, relay, tcp, yamux};
use prometheus_client::registry::Registry;

use crate::config::{Config, Transport};

/// Time a direct TCP dial has to connect and finish its noise and yamux
/// handshakes (about four round trips). It must stay below the 10 s an
/// AutoNAT v2 server allows for a dial-back: behind a NAT that silently drops
/// unsolicited packets, a longer dial-back would time the probe out instead
/// of reporting the address unreachable, and the node would never learn it is
/// private. 8 s still covers round trips of up to two seconds.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(8);

/// Time a relayed or in-memory connection has to finish its handshakes. A
/// circuit adds the relay's own round trips, so it gets more time; the bound
/// keeps a stalled peer from holding a pending-connection slot for long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// Why the transport could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The noise handshake could not be configured with the identity key.
    #[error("noise configuration failed: {0}")]
    Noise(#[from] noise::Error),
    /// The system's DNS configuration (/etc/resolv.conf) could not be read.
    #[error("reading the system DNS configuration failed: {0}")]
    Dns(std::io::Error),
}

/// Builds the transport and the relay client behaviour that pairs with it.
pub(crate) fn build(
    key: &identity::Keypair,
    config: &Config,
    registry: &mut Registry,
) -> Result<(Boxed<(PeerId, StreamMuxerBox)>, relay::client::Behaviour), TransportError> {
    let peer_id = key.public().to_peer_id();
    let (relay_transport, relay_behaviour) = relay::client::new(peer_id);
    let muxer = yamux::Config::default;

    let (relay, base) = match config.transport {
        Transport::Network { tcp: use_tcp, quic: use_quic } => {
            let relay = relay_transport
                .upgrade(Version::V1Lazy)
                .authenticate(noise::Config::new(key)?)
                .multiplex(muxer())
                .timeout(HANDSHAKE_TIMEOUT)
                .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
                .boxed();
            let tcp = if use_tcp {
                OptionalTransport::some(
                    tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
                        .upgrade(Version::V1Lazy)
                        .authenticate(noise::Config::new(key)?)
                        .multiplex(muxer())
                        .timeout(DIAL_TIMEOUT)
                        .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer))),
                )
            } else {
                OptionalTransport::none()
            };
            let quic = if use_quic {
                OptionalTransport::some(
                    quic::tokio::Transport::new(quic::Config::new(key))
                        .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer))),
                )
            } else {
                OptionalTransport::none()
            };
            let direct = tcp.or_transport(quic).map(|either, _| either.into_inner());
            let resolved = dns::tokio::Transport::system(direct).map_err(TransportError::Dns)?;
            (relay, resolved.boxed())
        }
        Transport::Memory { plaintext: true } => {
            let relay = relay_transport
                .upgrade(Version::V1Lazy)
                .authenticate(plaintext::Config::new(key))
                .multiplex(muxer())
                .timeout(HANDSHAKE_TIMEOUT)
                .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
                .boxed();
            let memory = MemoryTransport::new()
                .upgrade(Version::V1Lazy)
                .authenticate(plaintext::Config::new(key))
                .multiplex(muxer())
                .timeout(HANDSHAKE_TIMEOUT)
                .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)));
            (relay, memory.boxed())
        }
        Transport::Memory { plaintext: false } => {
            let relay = relay_transport
                .upgrade(Version::V1Lazy)
                .authenticate(noise::Config::new(key)?)
                .multiplex(muxer())
                .timeout(HANDSHAKE_TIMEOUT)
                .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
                .boxed();
            let memory = MemoryTransport::new()
                .upgrade(Version::V1Lazy)
                .authenticate(noise::Config::new(key)?)
                .multiplex(muxer())
                .timeout(HANDSHAKE_TIMEOUT)
                .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)));
            (relay, memory.boxed())
        }
    };

    let combined = relay.or_transport(base).map(|either, _| either.into_inner());
    let metered = libp2p::metrics::BandwidthTransport::new(combined, registry)
        .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)));
    Ok((metered.boxed(), relay_behaviour))
}
