//! The gossip layer's configuration: plain values with documented defaults.
//!
//! The daemon maps its TOML file onto [`Config`]; the simulator builds one per
//! node. [`Config::validate`] checks the rules that span several fields before
//! anything is opened.

use std::time::Duration;

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;

/// Port a gateway listens on when the operator does not choose one. It is
/// outside the IANA-registered range most home routers forward by default and
/// distinct from IPFS (4001), so a gateway and a local IPFS node do not clash.
pub const DEFAULT_PORT: u16 = 4170;

/// Longest network name: it is part of every protocol id and topic name, which
/// stay readable (and below multistream-select's 140-byte protocol limit) with
/// names up to this length.
pub const MAX_NETWORK_NAME_LEN: usize = 64;

/// Which transports the node uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// TCP (noise, yamux) and QUIC, DNS resolution, and the circuit relay v2
    /// client: what a gateway on a real network uses.
    Network {
        /// Listen and dial over TCP.
        tcp: bool,
        /// Listen and dial over QUIC v1.
        quic: bool,
    },
    /// libp2p's in-process memory transport (`/memory/<n>` addresses) for the
    /// real-stack simulator: thousands of nodes in one process, no sockets.
    Memory {
        /// Authenticate with libp2p's plaintext protocol instead of noise.
        /// Plaintext still exchanges public keys, so peer ids hold, but skips
        /// the Diffie-Hellman and encryption that dominate CPU with thousands
        /// of simulated nodes. Never used on a real network.
        plaintext: bool,
    },
}

/// Whether the node answers Kademlia queries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KademliaMode {
    /// Server once an external address is confirmed (AutoNAT or a relay
    /// reservation), client before: peers never learn addresses that do not work.
    Auto,
    /// Always answer queries (a bootstrap node with a known public address).
    Server,
    /// Never answer queries.
    Client,
    /// No Kademlia at all: peers come only from `bootstrap`, `peers` and
    /// mDNS. For closed meshes whose overlay is configured (a simulation of
    /// thousands of nodes in one process, a private site); a gateway on the
    /// public mesh needs discovery.
    Off,
}

/// Bounds on everything a peer can make this node hold.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Most established connections in total. Default 128: a gateway needs a
    /// gossip mesh of ~12 per topic plus discovery and relay peers; 128 leaves
    /// room for a relay server while bounding memory on a Raspberry Pi.
    pub max_connections: u32,
    /// Most established connections to one peer. Default 3: one relayed, one
    /// direct after hole punching, and one more while a simultaneous dial of
    /// both sides is being resolved.
    pub max_connections_per_peer: u32,
    /// Most incoming connections still in their handshake. Default 32.
    pub max_pending_incoming: u32,
    /// Most outgoing dials in progress. Default 32.
    pub max_pending_outgoing: u32,
    /// Capacity of the command queue from [`crate::Client`]s. Default 256.
    pub command_queue: usize,
    /// Capacity of the event queue to the node. Default 1024. When it is full
    /// new messages are ignored (not penalised) and counted as dropped.
    pub event_queue: usize,
    /// Most received messages awaiting the node's verdict. Default 4096; over
    /// it new messages are ignored and counted.
    pub max_pending_validations: usize,
    /// Time the node has to report a verdict before the message is ignored.
    /// Default 10 s, the order of gossipsub's message cache lifetime.
    pub validation_timeout: Duration,
    /// Messages per second a peer may forward to us, sustained. Default 50: a
    /// region produces a few reports per gateway per epoch, so honest peers stay
    /// far below it even during catch-up bursts.
    pub peer_message_rate: u32,
    /// Burst above [`Limits::peer_message_rate`]. Default 200.
    pub peer_message_burst: u32,
    /// Most ids in one fetch request. Default 256: a consensus round fetches at
    /// most a few hundred missing reports from one peer at a time.
    pub max_fetch_ids: usize,
    /// Largest fetch response in bytes. Default 1 MiB: 256 reports of ~250
    /// bytes fit many times, and a response may carry a few certificates.
    pub max_fetch_response_bytes: usize,
    /// Fetch requests per second a peer may send us, sustained. Default 10.
    pub fetch_rate: u32,
    /// Burst above [`Limits::fetch_rate`]. Default 20.
    pub fetch_burst: u32,
    /// Most inbound fetch requests awaiting the node's answer. Default 64.
    pub max_pending_fetches: usize,
    /// Time a fetch may take, both ways. Default 10 s.
    pub fetch_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 128,
            max_connections_per_peer: 3,
            max_pending_incoming: 32,
            max_pending_outgoing: 32,
            command_queue: 256,
            event_queue: 1024,
            max_pending_validations: 4096,
            validation_timeout: Duration::from_secs(10),
            peer_message_rate: 50,
            peer_message_burst: 200,
            max_fetch_ids: 256,
            max_fetch_response_bytes: 1 << 20,
            fetch_rate: 10,
            fetch_burst: 20,
            max_pending_fetches: 64,
            fetch_timeout: Duration::from_secs(10),
        }
    }
}

/// The gossip layer's configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The network's name (`network.name` in the daemon's config). It is part
    /// of topic names and protocol ids, so gateways of different networks
    /// never mix. Default `"meshd"`. Lowercase ASCII letters, digits and `-`.
    pub network: String,
    /// Transports. Default TCP and QUIC.
    pub transport: Transport,
    /// Addresses to listen on. Default `/ip4/0.0.0.0/tcp/4170` and
    /// `/ip4/0.0.0.0/udp/4170/quic-v1`.
    pub listen: Vec<Multiaddr>,
    /// Addresses the operator knows are reachable from outside, e.g. the
    /// public IP of a server with its port. They are announced at once, make
    /// the node public (Kademlia server, relay when enabled) without waiting
    /// for AutoNAT, which needs outbound connections a bootstrap node or relay
    /// may never make. Default none: gateways at home learn theirs by AutoNAT.
    pub external_addresses: Vec<Multiaddr>,
    /// Peers dialled at start and whenever the node has no connection, e.g.
    /// `/dns4/boot.example.org/tcp/4170/p2p/12D3KooW…`. Default none.
    pub bootstrap: Vec<Multiaddr>,
    /// Peers to stay connected to, dialled with the bootstrap peers. Default none.
    pub peers: Vec<Multiaddr>,
    /// Connections the node keeps open by dialling discovered peers. Default 25.
    pub target_peers: usize,
    /// Discover peers on the local network with mDNS. Default on: gateways of
    /// one site find each other without a bootstrap node.
    pub mdns: bool,
    /// Kademlia mode. Default [`KademliaMode::Auto`].
    pub kademlia_mode: KademliaMode,
    /// Probe our own addresses with AutoNAT v2 to learn whether the node is
    /// reachable. Default on. Off, the node never learns it is private, so it
    /// never reserves relay slots; for meshes whose addresses are known to
    /// work (a simulation over the memory transport).
    pub autonat_client: bool,
    /// Answer other nodes' AutoNAT v2 probes. Default on: every node that can
    /// dial out can tell a peer whether it is reachable.
    pub autonat_server: bool,
    /// Exchange listen and observed addresses and protocol lists with every
    /// peer (identify), and disconnect peers that announce another network.
    /// Default on. Kademlia learns peer addresses and the relay client finds
    /// relays through it, so turning it off requires [`KademliaMode::Off`]
    /// and `relay_client: false`: for a closed mesh whose peers are all of
    /// this network and reachable where they were dialled (a simulation over
    /// the memory transport). Off, one protocol handler less runs on every
    /// connection.
    pub identify: bool,
    /// Run the ping protocol on every connection, every
    /// [`Config::ping_interval`]. Default on. Off, an idle connection carries
    /// no traffic, which a home router's NAT drops; for meshes without NAT.
    pub ping: bool,
    /// Offer and use the request-response protocols that fetch envelopes by
    /// id and a region's decision ([`crate::Client::fetch`],
    /// [`crate::Client::fetch_decision`]). Default on: a node catching up
    /// needs them. Off, those calls fail with [`crate::FetchError::Disabled`]
    /// and peers' requests find no protocol; for gossip-only meshes.
    pub request_protocols: bool,
    /// How often AutoNAT v2 probes untested address candidates. Default 10 s.
    pub autonat_probe_interval: Duration,
    /// Reserve slots on relays when AutoNAT finds the node private, and
    /// upgrade relayed connections by hole punching (DCUtR). Default on. Off,
    /// neither protocol is offered to peers.
    pub relay_client: bool,
    /// Relays to reserve on (with their `/p2p/` id). When empty, connected
    /// peers that offer the relay protocol are used. Default none.
    pub relays: Vec<Multiaddr>,
    /// Relays to hold reservations on at once. Default 2, so one relay going
    /// away does not make the node unreachable.
    pub max_relay_reservations: usize,
    /// Act as a circuit relay v2 server for private nodes. Default off: only
    /// public nodes with bandwidth to spare should.
    pub relay_server: bool,
    /// Gossipsub heartbeat. Default 1 s (gossipsub's own default).
    pub heartbeat_interval: Duration,
    /// Peers in a topic mesh. Default 6 (gossipsub's default D).
    pub mesh_n: usize,
    /// Lower bound of the mesh before grafting. Default 4.
    pub mesh_n_low: usize,
    /// Upper bound of the mesh before pruning. Default 12.
    pub mesh_n_high: usize,
    /// Peers from one IP address tolerated before the scoring penalises them.
    /// Default 10: a few gateways behind one home router are normal.
    pub ip_colocation_threshold: f64,
    /// Connections with no stream open are closed after this. Default 60 s.
    pub idle_connection_timeout: Duration,
    /// How often each connection is pinged. Default 15 s (libp2p's own): the
    /// traffic keeps a home router's NAT mapping of an idle connection alive
    /// (routers drop idle TCP mappings after 30 s to a few minutes) and
    /// measures round-trip times.
    pub ping_interval: Duration,
    /// How often the node checks its peer count and relay reservations. Default 5 s.
    pub maintenance_interval: Duration,
    /// Resource bounds.
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            network: "meshd".to_owned(),
            transport: Transport::Network { tcp: true, quic: true },
            listen: vec![
                Multiaddr::empty().with(Protocol::Ip4([0, 0, 0, 0].into())).with(Protocol::Tcp(DEFAULT_PORT)),
                Multiaddr::empty()
                    .with(Protocol::Ip4([0, 0, 0, 0].into()))
                    .with(Protocol::Udp(DEFAULT_PORT))
                    .with(Protocol::QuicV1),
            ],
            external_addresses: Vec::new(),
            bootstrap: Vec::new(),
            peers: Vec::new(),
            target_peers: 25,
            mdns: true,
            kademlia_mode: KademliaMode::Auto,
            autonat_client: true,
            autonat_server: true,
            identify: true,
            ping: true,
            request_protocols: true,
            autonat_probe_interval: Duration::from_secs(10),
            relay_client: true,
            relays: Vec::new(),
            max_relay_reservations: 2,
            relay_server: false,
            heartbeat_interval: Duration::from_secs(1),
            mesh_n: 6,
            mesh_n_low: 4,
            mesh_n_high: 12,
            ip_colocation_threshold: 10.0,
            idle_connection_timeout: Duration::from_secs(60),
            ping_interval: Duration::from_secs(15),
            maintenance_interval: Duration::from_secs(5),
            limits: Limits::default(),
        }
    }
}

impl Config {
    /// A configuration for tests and the simulator: loopback TCP on a free
    /// port, no mDNS, short probe and maintenance intervals.
    pub fn local(network: &str) -> Self {
        Config {
            network: network.to_owned(),
            transport: Transport::Network { tcp: true, quic: false },
            listen: vec![
                Multiaddr::empty().with(Protocol::Ip4([127, 0, 0, 1].into())).with(Protocol::Tcp(0)),
            ],
            mdns: false,
            autonat_probe_interval: Duration::from_secs(1),
            maintenance_interval: Duration::from_secs(1),
            ..Config::default()
        }
    }

    /// This configuration with gossipsub alone over the memory transport
    /// (plaintext, one `/memory/0` listener): no Kademlia, AutoNAT or relay
    /// client, and no identify, ping or request-response handlers. For a
    /// closed in-process mesh (tests, the simulator) whose peers are all
    /// dialled directly, always reachable and never asked for anything:
    /// each protocol left out is one handler less on every connection.
    pub fn gossip_only_in_memory(self) -> Self {
        Config {
            transport: Transport::Memory { plaintext: true },
            listen: "/memory/0".parse().into_iter().collect(),
            kademlia_mode: KademliaMode::Off,
            autonat_client: false,
            autonat_server: false,
            relay_client: false,
            identify: false,
            ping: false,
            request_protocols: false,
            ..self
        }
    }

    /// Checks the rules that span fields; run before [`crate::new`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        let name_ok = !self.network.is_empty()
            && self.network.len() <= MAX_NETWORK_NAME_LEN
            && self.network.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            return Err(ConfigError::NetworkName(self.network.clone()));
        }
        if let Transport::Network { tcp: false, quic: false } = self.transport {
            return Err(ConfigError::NoTransport);
        }
        check_mesh_bounds(self.mesh_n, self.mesh_n_low, self.mesh_n_high)?;
        if !self.identify {
            if self.kademlia_mode != KademliaMode::Off {
                return Err(ConfigError::NeedsIdentify("kademlia_mode (set it to Off)"));
            }
            if self.relay_client {
                return Err(ConfigError::NeedsIdentify("relay_client (set it to false)"));
            }
        }
        for (name, value) in [
            ("heartbeat_interval", self.heartbeat_interval),
            ("autonat_probe_interval", self.autonat_probe_interval),
            ("maintenance_interval", self.maintenance_interval),
            ("idle_connection_timeout", self.idle_connection_timeout),
            ("ping_interval", self.ping_interval),
            ("limits.validation_timeout", self.limits.validation_timeout),
            ("limits.fetch_timeout", self.limits.fetch_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Zero(name));
            }
        }
        let l = &self.limits;
        for (name, value) in [
            ("limits.max_connections", l.max_connections as usize),
            ("limits.max_connections_per_peer", l.max_connections_per_peer as usize),
            ("limits.max_pending_incoming", l.max_pending_incoming as usize),
            ("limits.max_pending_outgoing", l.max_pending_outgoing as usize),
            ("limits.command_queue", l.command_queue),
            ("limits.event_queue", l.event_queue),
            ("limits.max_pending_validations", l.max_pending_validations),
            ("limits.peer_message_rate", l.peer_message_rate as usize),
            ("limits.max_fetch_ids", l.max_fetch_ids),
            ("limits.fetch_rate", l.fetch_rate as usize),
            ("limits.max_pending_fetches", l.max_pending_fetches),
            ("target_peers", self.target_peers),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        if l.peer_message_burst < l.peer_message_rate {
            return Err(ConfigError::BurstBelowRate("limits.peer_message_burst"));
        }
        if l.fetch_burst < l.fetch_rate {
            return Err(ConfigError::BurstBelowRate("limits.fetch_burst"));
        }
        if l.max_fetch_response_bytes
            < meshd_protocol::codec::MAX_ENVELOPE_LEN + crate::fetch::RESPONSE_OVERHEAD
        {
            return Err(ConfigError::FetchResponseTooSmall(l.max_fetch_response_bytes));
        }
        if l.max_fetch_ids > crate::fetch::MAX_FETCH_IDS {
            return Err(ConfigError::TooManyFetchIds(l.max_fetch_ids));
        }
        if self.target_peers > l.max_connections as usize {
            return Err(ConfigError::TargetAboveLimit {
                target: self.target_peers,
                limit: l.max_connections,
            });
        }
        for relay in &self.relays {
            if !matches!(relay.iter().last(), Some(Protocol::P2p(_))) {
                return Err(ConfigError::RelayWithoutPeerId(relay.clone()));
            }
        }
        Ok(())
    }
}

/// Checks gossipsub mesh bounds: `0 < mesh_n_low <= mesh_n <= mesh_n_high`.
pub fn check_mesh_bounds(mesh_n: usize, mesh_n_low: usize, mesh_n_high: usize) -> Result<(), ConfigError> {
    if 0 < mesh_n_low && mesh_n_low <= mesh_n && mesh_n <= mesh_n_high {
        Ok(())
    } else {
        Err(ConfigError::MeshBounds { low: mesh_n_low, n: mesh_n, high: mesh_n_high })
    }
}

/// The outbound peers gossipsub keeps in a mesh of these bounds when it
/// prunes: its default of two, lowered where gossipsub requires it to be at
/// most half of `mesh_n` and at most `mesh_n_low`.
pub fn mesh_outbound_min(mesh_n: usize, mesh_n_low: usize) -> usize {
    2.min(mesh_n / 2).min(mesh_n_low)
}

/// A [`Config`] that cannot work; each message names the field and the fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The network name is empty, too long or has characters outside `[a-z0-9-]`.
    #[error(
        "gossip network name {0:?} is invalid: use 1 to {MAX_NETWORK_NAME_LEN} lowercase letters, digits or '-'"
    )]
    NetworkName(String),
    /// Both TCP and QUIC are off.
    #[error("gossip transport has neither tcp nor quic enabled: enable at least one")]
    NoTransport,
    /// The mesh bounds are not `0 < mesh_n_low <= mesh_n <= mesh_n_high`.
    #[error("gossip mesh bounds must satisfy 0 < mesh_n_low ({low}) <= mesh_n ({n}) <= mesh_n_high ({high})")]
    MeshBounds {
        /// `mesh_n_low`.
        low: usize,
        /// `mesh_n`.
        n: usize,
        /// `mesh_n_high`.
        high: usize,
    },
    /// Identify is off while a protocol that learns from it is on.
    #[error("gossip identify is off but {0} learns peer addresses from it: turn identify on or that off")]
    NeedsIdentify(&'static str),
    /// A duration, count or capacity that must be positive is zero.
    #[error("gossip setting {0} is zero: it must be positive")]
    Zero(&'static str),
    /// A burst is below its sustained rate.
    #[error("gossip setting {0} is below its rate: a burst must be at least the sustained rate")]
    BurstBelowRate(&'static str),
    /// The fetch response limit cannot hold one envelope of the largest kind.
    #[error("gossip limits.max_fetch_response_bytes = {0} cannot hold one certificate envelope: raise it")]
    FetchResponseTooSmall(usize),
    /// The fetch id limit exceeds what the wire format allows.
    #[error("gossip limits.max_fetch_ids = {0} exceeds the protocol maximum of {max}", max = crate::fetch::MAX_FETCH_IDS)]
    TooManyFetchIds(usize),
    /// More target peers than allowed connections.
    #[error("gossip target_peers = {target} exceeds limits.max_connections = {limit}: lower target_peers")]
    TargetAboveLimit {
        /// `target_peers`.
        target: usize,
        /// `limits.max_connections`.
        limit: u32,
    },
    /// A relay address lacks the relay's `/p2p/<id>` suffix.
    #[error("gossip relay address {0} has no /p2p/<peer id> suffix: a reservation needs the relay's id")]
    RelayWithoutPeerId(Multiaddr),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
        assert_eq!(Config::local("test-net").validate(), Ok(()));
    }

    #[test]
    fn network_names_outside_the_alphabet_are_refused() {
        for name in ["", "Upper", "with space", "slash/", &"x".repeat(MAX_NETWORK_NAME_LEN + 1)] {
            let config = Config { network: name.to_owned(), ..Config::default() };
            assert_eq!(config.validate(), Err(ConfigError::NetworkName(name.to_owned())));
        }
    }

    #[test]
    fn cross_field_rules_are_checked() {
        let config = Config { mesh_n_low: 7, ..Config::default() };
        assert!(matches!(config.validate(), Err(ConfigError::MeshBounds { .. })));
        let config =
            Config { transport: Transport::Network { tcp: false, quic: false }, ..Config::default() };
        assert_eq!(config.validate(), Err(ConfigError::NoTransport));
        let mut config = Config::default();
        config.limits.fetch_burst = 1;
        assert_eq!(config.validate(), Err(ConfigError::BurstBelowRate("limits.fetch_burst")));
        let mut config = Config::default();
        config.limits.max_fetch_response_bytes = 1000;
        assert_eq!(config.validate(), Err(ConfigError::FetchResponseTooSmall(1000)));
        let config = Config { target_peers: 1000, ..Config::default() };
        assert!(matches!(config.validate(), Err(ConfigError::TargetAboveLimit { .. })));
        let relay: Multiaddr = "/ip4/198.18.0.1/tcp/4170".parse().expect("multiaddr");
        let config = Config { relays: vec![relay.clone()], ..Config::default() };
        assert_eq!(config.validate(), Err(ConfigError::RelayWithoutPeerId(relay)));
    }

    #[test]
    fn gossipsub_accepts_the_outbound_minimum_of_any_valid_bounds() {
        for (n, low, high) in [(6, 4, 12), (4, 3, 6), (2, 1, 3), (1, 1, 1), (3, 3, 3)] {
            assert_eq!(check_mesh_bounds(n, low, high), Ok(()));
            let built = libp2p::gossipsub::ConfigBuilder::default()
                .mesh_n(n)
                .mesh_n_low(low)
                .mesh_n_high(high)
                .mesh_outbound_min(mesh_outbound_min(n, low))
                .build();
            assert!(built.is_ok(), "[{n}, {low}, {high}]: {:?}", built.err());
        }
        assert_eq!(mesh_outbound_min(6, 4), 2, "gossipsub's default where it fits");
        assert!(matches!(check_mesh_bounds(4, 5, 6), Err(ConfigError::MeshBounds { .. })));
        assert!(matches!(check_mesh_bounds(0, 0, 1), Err(ConfigError::MeshBounds { .. })));
    }

    #[test]
    fn identify_goes_only_with_what_learns_from_it() {
        let config = Config { identify: false, ..Config::default() };
        assert_eq!(config.validate(), Err(ConfigError::NeedsIdentify("kademlia_mode (set it to Off)")));
        let config = Config { identify: false, kademlia_mode: KademliaMode::Off, ..Config::default() };
        assert_eq!(config.validate(), Err(ConfigError::NeedsIdentify("relay_client (set it to false)")));
        let config = Config {
            identify: false,
            kademlia_mode: KademliaMode::Off,
            relay_client: false,
            ..Config::default()
        };
        assert_eq!(config.validate(), Ok(()));
    }
}
