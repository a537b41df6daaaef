//! What the gossip layer tells the node.

use libp2p::{Multiaddr, PeerId};
use meshd_protocol::{Envelope, Hash32};
use tokio::sync::oneshot;

use crate::topic::Topic;

/// Something the node should know or act on. Events arrive on the bounded
/// receiver returned by [`crate::new`]; the node must keep draining it (when
/// it is full, received messages are ignored and counted as dropped).
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// A new message passed the layer's checks (size, envelope structure, the
    /// sender's rate) and awaits the node's verdict through
    /// [`crate::Client::report_validation`] within
    /// [`crate::config::Limits::validation_timeout`]; it is forwarded only
    /// when accepted. The signature has not been checked.
    MessageReceived {
        /// The message id: [`Envelope::id`] (keccak256 of the bytes).
        id: Hash32,
        /// The peer that forwarded it to us (not necessarily its author).
        source: PeerId,
        /// The topic it came on.
        topic: Topic,
        /// The decoded envelope.
        envelope: Envelope,
    },
    /// The first connection to a peer was established.
    PeerConnected {
        /// The peer.
        peer: PeerId,
        /// The peer's address on that connection.
        address: Multiaddr,
        /// Whether the connection runs through a relay.
        relayed: bool,
    },
    /// The last connection to a peer closed.
    PeerDisconnected {
        /// The peer.
        peer: PeerId,
    },
    /// A peer asked for envelopes by id. Answer through the responder; a
    /// dropped responder answers with no envelopes.
    FetchRequested {
        /// The asking peer.
        peer: PeerId,
        /// The ids asked for (at most [`crate::config::Limits::max_fetch_ids`]).
        ids: Vec<Hash32>,
        /// Where the answer goes.
        responder: FetchResponder,
    },
    /// A peer asked for the decision of `region` in `epoch`. Answer through
    /// the responder with the envelopes of the finalized summary and its
    /// certificate, or with none; a dropped responder answers with none.
    DecisionRequested {
        /// The asking peer.
        peer: PeerId,
        /// The region's H3 index.
        region: u64,
        /// The epoch.
        epoch: u64,
        /// Where the answer goes.
        responder: FetchResponder,
    },
    /// What AutoNAT found out about our reachability changed.
    ReachabilityChanged {
        /// The new reachability.
        reachability: Reachability,
    },
    /// A relay accepted our reservation: peers can reach us at `address`.
    RelayReserved {
        /// The relay.
        relay: PeerId,
        /// Our address through the relay (`…/p2p/<relay>/p2p-circuit`).
        address: Multiaddr,
    },
    /// A relayed connection to a peer was upgraded to a direct one by hole punching.
    HolePunched {
        /// The peer now directly connected.
        peer: PeerId,
    },
    /// Hole punching to a peer failed; the relayed connection stays.
    HolePunchFailed {
        /// The peer.
        peer: PeerId,
        /// Why it failed.
        reason: String,
    },
    /// The node listens on a new address.
    ListenAddressAdded {
        /// The address.
        address: Multiaddr,
    },
    /// An address of ours was confirmed reachable from outside (by AutoNAT, or
    /// a relay reservation for relayed addresses).
    ExternalAddressConfirmed {
        /// The address.
        address: Multiaddr,
    },
}

/// Whether other nodes can dial this node directly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reachability {
    /// Not known yet: no AutoNAT probe has finished.
    Unknown,
    /// An address of ours was confirmed reachable from outside.
    Public,
    /// Probes of our addresses failed: the node is behind a NAT or firewall
    /// and reserves slots on relays.
    Private,
}

/// The node's verdict on a received message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Valid: deliver and forward it.
    Accept,
    /// Provably invalid (bad signature, broken rules): drop it and penalise the
    /// peer that sent it.
    Reject,
    /// Not useful now (too late, unknown epoch, duplicate by content): drop it
    /// without penalty.
    Ignore,
}

/// Answers one [`Event::FetchRequested`].
#[derive(Debug)]
pub struct FetchResponder {
    pub(crate) sender: oneshot::Sender<Vec<Vec<u8>>>,
}

impl FetchResponder {
    /// Sends the encoded envelopes the node has among those asked for. Those
    /// that do not fit the response limit are left out, in order.
    pub fn respond(self, envelopes: Vec<Vec<u8>>) {
        // The requester may have given up; nothing to do then.
        let _ = self.sender.send(envelopes);
    }
}
