//! The one combined libp2p behaviour of a gateway.

use std::num::NonZeroUsize;
use std::time::Duration;

use libp2p::gossipsub::{self, MessageAuthenticity, MessageId, TopicHash, ValidationMode};
use libp2p::kad::store::MemoryStore;
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    StreamProtocol, autonat, connection_limits, dcutr, identify, identity, kad, mdns, ping, relay,
    request_response,
};
use meshd_protocol::keccak256;
use prometheus_client::registry::Registry;

use crate::config::{Config, KademliaMode};
use crate::scoring;
use crate::topic::Topic;
use crate::{decision, fetch};

/// Largest gossipsub RPC frame. One certificate envelope is about 12.4 KB
/// (`MAX_ENVELOPE_LEN`); implementations batch several messages and control
/// entries per frame, and 64 KiB (gossipsub's own default) holds five
/// certificates or hundreds of reports. Messages over `MAX_ENVELOPE_LEN`
/// inside a frame are dropped by the node's first check.
pub const MAX_TRANSMIT_SIZE: usize = 64 * 1024;

/// How long message ids are remembered to drop duplicates. Two minutes cover
/// gossip's propagation and IWANT retries many times over; the node keeps its
/// own report pool for the longer, epoch-scale memory.
pub const DUPLICATE_CACHE_TIME: Duration = Duration::from_secs(120);

/// Topics one peer may be subscribed to in our view: its region, its
/// neighbours (witnesses near borders) and the global topic fit many times.
pub const MAX_TOPICS_PER_PEER: usize = 64;

/// Frames of outgoing gossip queued per connection before messages to a slow
/// peer are dropped (and the peer reported slow). 1000 frames of a few
/// hundred bytes bound the queue to well under a megabyte per connection.
pub const CONNECTION_QUEUE_LEN: usize = 1000;

/// Routing-table bucket size. Kademlia's k = 20 is sized for networks of
/// millions; gateways of one network number thousands, and smaller buckets
/// mean less state and traffic on a Raspberry Pi.
pub const KBUCKET_SIZE: usize = 16;

/// The identify protocol version of `network`: peers of another network are
/// disconnected when they announce a different one.
pub fn identify_protocol(network: &str) -> String {
    format!("/meshd/{network}/1.0.0")
}

/// The Kademlia protocol id of `network`: one DHT per network.
pub fn kad_protocol(network: &str) -> StreamProtocol {
    StreamProtocol::try_from_owned(format!("/meshd/{network}/kad/1.0.0"))
        .unwrap_or(StreamProtocol::new("/meshd/kad/1.0.0"))
}

/// The gossipsub message id: keccak256 of the message data, which for a
/// well-formed envelope equals [`meshd_protocol::Envelope::id`].
pub fn message_id(data: &[u8]) -> MessageId {
    MessageId::new(&keccak256(data).0)
}

/// Accepts remote subscriptions only to topics of our network.
pub struct NetworkTopics {
    network: String,
}

impl gossipsub::TopicSubscriptionFilter for NetworkTopics {
    fn can_subscribe(&mut self, topic: &TopicHash) -> bool {
        Topic::parse(&self.network, topic).is_some()
    }
}

/// The gossipsub behaviour with our subscription filter.
pub type Gossipsub =
    gossipsub::Behaviour<gossipsub::IdentityTransform, gossipsub::MaxCountSubscriptionFilter<NetworkTopics>>;

/// Every protocol a gateway speaks, in one behaviour.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    /// Refuses connections over the limits first, before any protocol runs.
    pub limits: connection_limits::Behaviour,
    /// Validated gossip of envelopes.
    pub gossipsub: Gossipsub,
    /// Peer discovery across the network (absent with [`KademliaMode::Off`]).
    pub kademlia: Toggle<kad::Behaviour<MemoryStore>>,
    /// Exchanges listen addresses, observed addresses and protocols (absent
    /// when [`Config::identify`] is off).
    pub identify: Toggle<identify::Behaviour>,
    /// Liveness and round-trip times (absent when [`Config::ping`] is off).
    pub ping: Toggle<ping::Behaviour>,
    /// Peer discovery on the local network.
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    /// Learns whether our addresses are reachable from outside.
    pub autonat_client: Toggle<autonat::v2::client::Behaviour>,
    /// Tells peers whether their addresses are reachable.
    pub autonat_server: Toggle<autonat::v2::server::Behaviour>,
    /// Reserves slots on relays and dials through them.
    pub relay_client: Toggle<relay::client::Behaviour>,
    /// Relays for private peers (public nodes only).
    pub relay_server: Toggle<relay::Behaviour>,
    /// Upgrades relayed connections to direct ones by hole punching.
    pub dcutr: Toggle<dcutr::Behaviour>,
    /// Fetches envelopes by id (absent when [`Config::request_protocols`] is off).
    pub fetch: Toggle<request_response::Behaviour<fetch::Codec>>,
    /// Fetches a region's decision of an epoch (absent with `fetch`).
    pub decision: Toggle<request_response::Behaviour<decision::Codec>>,
}

/// Why the behaviour could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BehaviourError {
    /// Gossipsub refused its configuration.
    #[error("gossipsub configuration refused: {0}")]
    Gossipsub(String),
    /// mDNS could not open its socket.
    #[error("mDNS could not start: {0}")]
    Mdns(std::io::Error),
}

impl Behaviour {
    /// Builds every protocol from the config.
    pub(crate) fn new(
        key: &identity::Keypair,
        config: &Config,
        relay_client: relay::client::Behaviour,
        registry: &mut Registry,
    ) -> Result<Self, BehaviourError> {
        let peer_id = key.public().to_peer_id();
        let limits = &config.limits;

        let connection_limits = connection_limits::Behaviour::new(
            connection_limits::ConnectionLimits::default()
                .with_max_established(Some(limits.max_connections))
                .with_max_established_per_peer(Some(limits.max_connections_per_peer))
                .with_max_pending_incoming(Some(limits.max_pending_incoming))
                .with_max_pending_outgoing(Some(limits.max_pending_outgoing)),
        );

        let gossipsub = gossipsub(config, registry)?;

        let mut kad_config = kad::Config::new(kad_protocol(&config.network));
        kad_config
            .set_query_timeout(Duration::from_secs(30))
            // Records and provider records are not used: inbound PUTs are not stored.
            .set_record_filtering(kad::StoreInserts::FilterBoth)
            .set_kbucket_size(NonZeroUsize::new(KBUCKET_SIZE).unwrap_or(NonZeroUsize::MIN));
        let mode = match config.kademlia_mode {
            KademliaMode::Auto => Some(None),
            KademliaMode::Server => Some(Some(kad::Mode::Server)),
            KademliaMode::Client => Some(Some(kad::Mode::Client)),
            KademliaMode::Off => None,
        };
        let kademlia = mode.map(|mode| {
            let mut kademlia = kad::Behaviour::with_config(peer_id, MemoryStore::new(peer_id), kad_config);
            kademlia.set_mode(mode);
            kademlia
        });

        let identify = config.identify.then(|| {
            identify::Behaviour::new(
                identify::Config::new(identify_protocol(&config.network), key.public())
                    .with_agent_version(format!("meshd/{}", env!("CARGO_PKG_VERSION")))
                    .with_push_listen_addr_updates(true),
            )
        });

        let mdns = if config.mdns {
            Some(
                mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id)
                    .map_err(BehaviourError::Mdns)?,
            )
        } else {
            None
        };

        let autonat_client = config.autonat_client.then(|| {
            autonat::v2::client::Behaviour::new(
                // Nonces must be unpredictable to peers: seeded by the OS.
                rand::make_rng::<rand::rngs::StdRng>(),
                autonat::v2::client::Config::default().with_probe_interval(config.autonat_probe_interval),
            )
        });
        let autonat_server = config.autonat_server.then(autonat::v2::server::Behaviour::default);

        let relay_server =
            config.relay_server.then(|| relay::Behaviour::new(peer_id, relay::Config::default()));

        let fetch = config.request_protocols.then(|| {
            request_response::Behaviour::with_codec(
                fetch::Codec {
                    max_ids: limits.max_fetch_ids,
                    max_response_bytes: limits.max_fetch_response_bytes,
                },
                [(fetch::protocol(&config.network), request_response::ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(limits.fetch_timeout)
                    .with_max_concurrent_streams(limits.max_pending_fetches),
            )
        });

        let decision = config.request_protocols.then(|| {
            request_response::Behaviour::with_codec(
                decision::Codec,
                [(decision::protocol(&config.network), request_response::ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(limits.fetch_timeout)
                    .with_max_concurrent_streams(limits.max_pending_fetches),
            )
        });

        Ok(Behaviour {
            limits: connection_limits,
            gossipsub,
            kademlia: kademlia.into(),
            identify: identify.into(),
            ping: config
                .ping
                .then(|| ping::Behaviour::new(ping::Config::new().with_interval(config.ping_interval)))
                .into(),
            mdns: mdns.into(),
            autonat_client: autonat_client.into(),
            autonat_server: autonat_server.into(),
            relay_client: config.relay_client.then_some(relay_client).into(),
            relay_server: relay_server.into(),
            dcutr: config.relay_client.then(|| dcutr::Behaviour::new(peer_id)).into(),
            fetch: fetch.into(),
            decision: decision.into(),
        })
    }
}

fn gossipsub(config: &Config, registry: &mut Registry) -> Result<Gossipsub, BehaviourError> {
    let outbound_min = crate::config::mesh_outbound_min(config.mesh_n, config.mesh_n_low);
    let gossip_config = gossipsub::ConfigBuilder::default()
        .validation_mode(ValidationMode::Anonymous)
        .validate_messages()
        .message_id_fn(|message: &gossipsub::Message| message_id(&message.data))
        .max_transmit_size(MAX_TRANSMIT_SIZE)
        .heartbeat_interval(config.heartbeat_interval)
        .mesh_n(config.mesh_n)
        .mesh_n_low(config.mesh_n_low)
        .mesh_n_high(config.mesh_n_high)
        .mesh_outbound_min(outbound_min)
        .duplicate_cache_time(DUPLICATE_CACHE_TIME)
        .connection_handler_queue_len(CONNECTION_QUEUE_LEN)
        .build()
        .map_err(|e| BehaviourError::Gossipsub(e.to_string()))?;
    let filter = gossipsub::MaxCountSubscriptionFilter {
        filter: NetworkTopics { network: config.network.clone() },
        max_subscribed_topics: MAX_TOPICS_PER_PEER,
        max_subscriptions_per_request: MAX_TOPICS_PER_PEER,
    };
    let mut behaviour =
        Gossipsub::new_with_subscription_filter(MessageAuthenticity::Anonymous, gossip_config, filter)
            .map_err(|e| BehaviourError::Gossipsub(e.to_owned()))?
            .with_metrics(
                registry.sub_registry_with_prefix("gossipsub"),
                gossipsub::MetricsConfig::default(),
            );
    behaviour
        .with_peer_score(scoring::peer_score_params(config.ip_colocation_threshold), scoring::thresholds())
        .map_err(BehaviourError::Gossipsub)?;
    Ok(behaviour)
}
