//! The node's handle on the gossip layer.

use libp2p::{Multiaddr, PeerId};
use meshd_protocol::{Envelope, Hash32};
use tokio::sync::{mpsc, oneshot};

use crate::event::{Reachability, Verdict};
use crate::fetch::Status;
use crate::topic::Topic;

/// A cloneable handle that sends commands to the [`crate::EventLoop`].
///
/// Every method waits for a slot in the bounded command queue, then for the
/// event loop's answer. All fail with a `Stopped` error once the event loop
/// has shut down.
#[derive(Clone, Debug)]
pub struct Client {
    pub(crate) commands: mpsc::Sender<Command>,
}

/// What the event loop is asked to do; each carries the oneshot its answer goes to.
#[derive(Debug)]
pub(crate) enum Command {
    Publish {
        topic: Topic,
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<Hash32, PublishError>>,
    },
    Subscribe {
        topic: Topic,
        reply: oneshot::Sender<Result<bool, SubscribeError>>,
    },
    Unsubscribe {
        topic: Topic,
        reply: oneshot::Sender<bool>,
    },
    ReportValidation {
        id: Hash32,
        verdict: Verdict,
        reply: oneshot::Sender<bool>,
    },
    Fetch {
        peer: PeerId,
        ids: Vec<Hash32>,
        reply: oneshot::Sender<Result<Fetched, FetchError>>,
    },
    FetchDecision {
        peer: PeerId,
        request: crate::decision::Request,
        reply: oneshot::Sender<Result<Vec<Envelope>, FetchError>>,
    },
    Dial {
        address: Multiaddr,
        reply: oneshot::Sender<Result<(), DialError>>,
    },
    Snapshot {
        reply: oneshot::Sender<Snapshot>,
    },
}

/// A snapshot of the layer's state, for status pages and tests.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Peers with at least one connection.
    pub connected_peers: Vec<PeerId>,
    /// Addresses we listen on.
    pub listen_addresses: Vec<Multiaddr>,
    /// Our confirmed external addresses (direct and relayed).
    pub external_addresses: Vec<Multiaddr>,
    /// Peers in our gossip meshes, over all topics.
    pub mesh_peers: Vec<PeerId>,
    /// Gossipsub scores of connected peers.
    pub peer_scores: Vec<(PeerId, f64)>,
    /// What AutoNAT found out.
    pub reachability: Option<Reachability>,
}

/// What a fetch returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// The envelopes found, with their ids, in the responder's order.
    pub found: Vec<(Hash32, Envelope)>,
    /// The ids asked for that the responder did not return.
    pub missing: Vec<Hash32>,
}

/// Why a publish failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The event loop has stopped.
    #[error("the gossip event loop has stopped")]
    Stopped,
    /// The message is larger than any envelope may be.
    #[error("message of {len} bytes exceeds the envelope limit of {limit}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit, `MAX_ENVELOPE_LEN`.
        limit: usize,
    },
    /// The same message was published or received before.
    #[error("the message was already published or received")]
    Duplicate,
    /// No connected peer is subscribed to the topic.
    #[error("no connected peer is subscribed to the topic")]
    NoPeers,
    /// Gossipsub refused it for another reason (e.g. all send queues full).
    #[error("gossipsub refused the message: {0}")]
    Refused(String),
}

/// Why a subscription failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SubscribeError {
    /// The event loop has stopped.
    #[error("the gossip event loop has stopped")]
    Stopped,
    /// Gossipsub refused the subscription.
    #[error("gossipsub refused the subscription: {0}")]
    Refused(String),
}

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The event loop has stopped.
    #[error("the gossip event loop has stopped")]
    Stopped,
    /// More ids than the configured limit: split the request.
    #[error("{count} ids exceed the fetch limit of {limit}: split the request")]
    TooManyIds {
        /// Ids asked for.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// Too many fetches of ours are in flight.
    #[error("too many fetches in flight")]
    Busy,
    /// The node runs without the request protocols
    /// ([`crate::Config::request_protocols`] is off).
    #[error("the fetch protocols are off in this node's gossip config (request_protocols)")]
    Disabled,
    /// The peer answered with a refusal.
    #[error("the peer refused the fetch: {0:?}")]
    Refused(Status),
    /// The request failed: dial failure, timeout, closed connection, a peer
    /// without the protocol, or a malformed response.
    #[error("the fetch failed: {0}")]
    Failed(String),
}

/// Why a dial could not start.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// The event loop has stopped.
    #[error("the gossip event loop has stopped")]
    Stopped,
    /// The swarm refused the dial (e.g. limits, no transport for the address).
    #[error("dial refused: {0}")]
    Refused(String),
}

/// The event loop has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the gossip event loop has stopped")]
pub struct Stopped;

impl Client {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Stopped> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(make(reply)).await.map_err(|_| Stopped)?;
        answer.await.map_err(|_| Stopped)
    }

    /// Publishes an encoded envelope on a topic; returns its message id.
    pub async fn publish(&self, topic: Topic, bytes: Vec<u8>) -> Result<Hash32, PublishError> {
        self.ask(|reply| Command::Publish { topic, bytes, reply }).await.map_err(|_| PublishError::Stopped)?
    }

    /// Subscribes to a topic; `false` when already subscribed.
    pub async fn subscribe(&self, topic: Topic) -> Result<bool, SubscribeError> {
        self.ask(|reply| Command::Subscribe { topic, reply }).await.map_err(|_| SubscribeError::Stopped)?
    }

    /// Unsubscribes from a topic; `false` when not subscribed.
    pub async fn unsubscribe(&self, topic: Topic) -> Result<bool, Stopped> {
        self.ask(|reply| Command::Unsubscribe { topic, reply }).await
    }

    /// Reports the node's verdict on a message of [`crate::Event::MessageReceived`];
    /// `false` when the message was no longer pending (timed out or unknown).
    pub async fn report_validation(&self, id: Hash32, verdict: Verdict) -> Result<bool, Stopped> {
        self.ask(|reply| Command::ReportValidation { id, verdict, reply }).await
    }

    /// Asks a peer for envelopes by id.
    pub async fn fetch(&self, peer: PeerId, ids: Vec<Hash32>) -> Result<Fetched, FetchError> {
        self.ask(|reply| Command::Fetch { peer, ids, reply }).await.map_err(|_| FetchError::Stopped)?
    }

    /// Asks a peer for the decision of `region` (its H3 index) in `epoch`:
    /// the envelopes of the finalized summary and its certificate, decoded but
    /// not checked (the certificate is checked against the committee by the
    /// node). Empty when the peer does not hold the decision.
    pub async fn fetch_decision(
        &self,
        peer: PeerId,
        region: u64,
        epoch: u64,
    ) -> Result<Vec<Envelope>, FetchError> {
        let request = crate::decision::Request { region, epoch };
        self.ask(|reply| Command::FetchDecision { peer, request, reply })
            .await
            .map_err(|_| FetchError::Stopped)?
    }

    /// Dials an address (with or without `/p2p/<id>`).
    pub async fn dial(&self, address: Multiaddr) -> Result<(), DialError> {
        self.ask(|reply| Command::Dial { address, reply }).await.map_err(|_| DialError::Stopped)?
    }

    /// A snapshot of the layer's state.
    pub async fn snapshot(&self) -> Result<Snapshot, Stopped> {
        self.ask(|reply| Command::Snapshot { reply }).await
    }
}
