//! The task that owns the swarm: executes commands, turns swarm events into
//! [`Event`]s, and keeps the node connected, reachable and within its bounds.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use libp2p::core::ConnectedPoint;
use libp2p::core::transport::ListenerId;
use libp2p::gossipsub::{self, MessageAcceptance, MessageId};
use libp2p::metrics::Recorder;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, Swarm, autonat, dcutr, identify, kad, mdns, relay};
use meshd_protocol::codec::{self, MAX_ENVELOPE_LEN};
use meshd_protocol::{Envelope, Hash32};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::behaviour::{self, Behaviour, BehaviourEvent};
use crate::client::{Command, DialError, FetchError, Fetched, PublishError, Snapshot, SubscribeError};
use crate::config::Config;
use crate::decision;
use crate::event::{Event, FetchResponder, Reachability, Verdict};
use crate::fetch::{Request, Response, Status};
use crate::metrics::{DropReason, Metrics};
use crate::rate::TokenBucket;
use crate::scoring;
use crate::topic::Topic;

/// How often pending validations and fetches are checked for expiry. One
/// second is the resolution of every timeout the loop enforces.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);

type PendingFetch = Pin<Box<dyn Future<Output = (ResponseChannel<Response>, Option<Vec<Vec<u8>>>)> + Send>>;

/// Where the answer to one of our fetches goes.
type FetchReply = oneshot::Sender<Result<Fetched, FetchError>>;

/// Where the answer to one of our decision requests goes.
type DecisionReply = oneshot::Sender<Result<Vec<Envelope>, FetchError>>;

/// A message awaiting the node's verdict.
struct PendingValidation {
    source: PeerId,
    message_id: MessageId,
    deadline: Instant,
}

/// What we know of a connected peer.
#[derive(Default)]
struct Peer {
    connections: usize,
    /// Addresses we dialled it at, and those it announced (not relayed).
    addresses: Vec<Multiaddr>,
    /// It offers the circuit relay v2 hop protocol.
    is_relay: bool,
}

/// The task that owns the [`Swarm`]. Run it with [`EventLoop::run`].
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    config: Config,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    metrics: Metrics,
    subscribed: HashSet<Topic>,
    peers: HashMap<PeerId, Peer>,
    message_rates: HashMap<PeerId, TokenBucket>,
    fetch_rates: HashMap<PeerId, TokenBucket>,
    pending_validations: HashMap<Hash32, PendingValidation>,
    inbound_fetches: FuturesUnordered<PendingFetch>,
    outbound_fetches: HashMap<OutboundRequestId, (Vec<Hash32>, FetchReply)>,
    inbound_decisions: FuturesUnordered<PendingFetch>,
    outbound_decisions: HashMap<OutboundRequestId, DecisionReply>,
    reachability: Reachability,
    confirmed_direct: HashSet<Multiaddr>,
    /// Relay reservations asked for: listener → (relay, circuit address).
    reservations: HashMap<ListenerId, (PeerId, Multiaddr)>,
}

impl EventLoop {
    pub(crate) fn new(
        swarm: Swarm<Behaviour>,
        config: Config,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<Event>,
        metrics: Metrics,
    ) -> Self {
        let declared: HashSet<Multiaddr> = config.external_addresses.iter().cloned().collect();
        let reachability = if declared.is_empty() { Reachability::Unknown } else { Reachability::Public };
        metrics.reachability(reachability);
        EventLoop {
            swarm,
            config,
            commands,
            events,
            metrics,
            subscribed: HashSet::new(),
            peers: HashMap::new(),
            message_rates: HashMap::new(),
            fetch_rates: HashMap::new(),
            pending_validations: HashMap::new(),
            inbound_fetches: FuturesUnordered::new(),
            outbound_fetches: HashMap::new(),
            inbound_decisions: FuturesUnordered::new(),
            outbound_decisions: HashMap::new(),
            reachability,
            confirmed_direct: declared,
            reservations: HashMap::new(),
        }
    }

    /// Our peer id.
    pub fn local_peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// Runs until `shutdown` is cancelled; then closes every connection.
    pub async fn run(mut self, shutdown: CancellationToken) {
        self.connect_to_known_peers();
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING_INTERVAL);
        // Ticks missed while nothing awaited a verdict are not made up.
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut maintenance = tokio::time::interval(self.config.maintenance_interval);
        let mut commands_open = true;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                command = self.commands.recv(), if commands_open => match command {
                    Some(command) => self.handle_command(command),
                    // Every client is gone; keep serving the network until shutdown.
                    None => commands_open = false,
                },
                event = self.swarm.select_next_some() => self.handle_swarm_event(event),
                Some((channel, envelopes)) = self.inbound_fetches.next(), if !self.inbound_fetches.is_empty() => {
                    self.answer_fetch(channel, envelopes);
                }
                Some((channel, envelopes)) = self.inbound_decisions.next(), if !self.inbound_decisions.is_empty() => {
                    self.answer_decision(channel, envelopes);
                }
                // Only armed while messages await a verdict: an idle node is
                // not woken every second for nothing.
                _ = housekeeping.tick(), if !self.pending_validations.is_empty() => self.expire_validations(),
                _ = maintenance.tick() => self.maintain(),
            }
        }
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for peer in peers {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    fn emit(&mut self, event: Event) -> bool {
        match self.events.try_send(event) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics.dropped(DropReason::EventQueueFull);
                false
            }
            // The node stopped listening; nothing to tell.
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    // ---- commands -------------------------------------------------------

    fn handle_command(&mut self, command: Command) {
        match command {
            Command::Publish { topic, bytes, reply } => {
                let _ = reply.send(self.publish(topic, bytes));
            }
            Command::Subscribe { topic, reply } => {
                let _ = reply.send(self.subscribe(topic));
            }
            Command::Unsubscribe { topic, reply } => {
                self.subscribed.remove(&topic);
                let _ = reply.send(
                    self.swarm.behaviour_mut().gossipsub.unsubscribe(&topic.ident(&self.config.network)),
                );
            }
            Command::ReportValidation { id, verdict, reply } => {
                let _ = reply.send(self.report_validation(id, verdict));
            }
            Command::Fetch { peer, ids, reply } => self.start_fetch(peer, ids, reply),
            Command::FetchDecision { peer, request, reply } => {
                self.start_decision_fetch(peer, request, reply)
            }
            Command::Dial { address, reply } => {
                let result = self.swarm.dial(address).map_err(|e| DialError::Refused(e.to_string()));
                let _ = reply.send(result);
            }
            Command::Snapshot { reply } => {
                let _ = reply.send(self.snapshot());
            }
        }
    }

    fn publish(&mut self, topic: Topic, bytes: Vec<u8>) -> Result<Hash32, PublishError> {
        if bytes.len() > MAX_ENVELOPE_LEN {
            return Err(PublishError::TooLarge { len: bytes.len(), limit: MAX_ENVELOPE_LEN });
        }
        let id = meshd_protocol::keccak256(&bytes);
        let ident = topic.ident(&self.config.network);
        match self.swarm.behaviour_mut().gossipsub.publish(ident, bytes) {
            Ok(_) => Ok(id),
            Err(gossipsub::PublishError::Duplicate) => Err(PublishError::Duplicate),
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => Err(PublishError::NoPeers),
            Err(e) => Err(PublishError::Refused(e.to_string())),
        }
    }

    fn subscribe(&mut self, topic: Topic) -> Result<bool, SubscribeError> {
        let ident = topic.ident(&self.config.network);
        let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
        let new = gossipsub.subscribe(&ident).map_err(|e| SubscribeError::Refused(e.to_string()))?;
        if new {
            gossipsub
                .set_topic_params(ident, scoring::topic_params())
                .map_err(|e| SubscribeError::Refused(e.to_owned()))?;
            self.subscribed.insert(topic);
        }
        Ok(new)
    }

    fn report_validation(&mut self, id: Hash32, verdict: Verdict) -> bool {
        let Some(pending) = self.pending_validations.remove(&id) else {
            return false;
        };
        self.metrics.verdict(verdict);
        let acceptance = match verdict {
            Verdict::Accept => MessageAcceptance::Accept,
            Verdict::Reject => MessageAcceptance::Reject,
            Verdict::Ignore => MessageAcceptance::Ignore,
        };
        self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
            &pending.message_id,
            &pending.source,
            acceptance,
        )
    }

    fn start_fetch(
        &mut self,
        peer: PeerId,
        ids: Vec<Hash32>,
        reply: oneshot::Sender<Result<Fetched, FetchError>>,
    ) {
        let limit = self.config.limits.max_fetch_ids;
        if ids.len() > limit {
            let _ = reply.send(Err(FetchError::TooManyIds { count: ids.len(), limit }));
            return;
        }
        if self.outbound_fetches.len() >= self.config.limits.max_pending_fetches {
            let _ = reply.send(Err(FetchError::Busy));
            return;
        }
        let Some(fetch) = self.swarm.behaviour_mut().fetch.as_mut() else {
            let _ = reply.send(Err(FetchError::Disabled));
            return;
        };
        let request_id = fetch.send_request(&peer, Request::Ids(ids.clone()));
        self.metrics.fetch_sent();
        self.outbound_fetches.insert(request_id, (ids, reply));
    }

    fn start_decision_fetch(&mut self, peer: PeerId, request: decision::Request, reply: DecisionReply) {
        if self.outbound_decisions.len() >= self.config.limits.max_pending_fetches {
            let _ = reply.send(Err(FetchError::Busy));
            return;
        }
        let Some(decision) = self.swarm.behaviour_mut().decision.as_mut() else {
            let _ = reply.send(Err(FetchError::Disabled));
            return;
        };
        let request_id = decision.send_request(&peer, request);
        self.metrics.fetch_sent();
        self.outbound_decisions.insert(request_id, reply);
    }

    fn snapshot(&mut self) -> Snapshot {
        let gossipsub = &self.swarm.behaviour().gossipsub;
        let connected_peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        let peer_scores = connected_peers
            .iter()
            .filter_map(|peer| gossipsub.peer_score(peer).map(|score| (*peer, score)))
            .collect();
        Snapshot {
            listen_addresses: self.swarm.listeners().cloned().collect(),
            external_addresses: self.swarm.external_addresses().cloned().collect(),
            mesh_peers: gossipsub.all_mesh_peers().copied().collect(),
            peer_scores,
            connected_peers,
            reachability: Some(self.reachability),
        }
    }

    // ---- swarm events ---------------------------------------------------

    fn handle_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.metrics.libp2p.record(&event);
        match event {
            SwarmEvent::Behaviour(event) => self.handle_behaviour_event(event),
            SwarmEvent::ConnectionEstablished { peer_id, endpoint, num_established, .. } => {
                let address = endpoint.get_remote_address().clone();
                let relayed = endpoint.is_relayed();
                let peer = self.peers.entry(peer_id).or_default();
                peer.connections = num_established.get() as usize;
                if let ConnectedPoint::Dialer { address, .. } = &endpoint
                    && !relayed
                    && !peer.addresses.contains(address)
                {
                    peer.addresses.push(address.clone());
                }
                self.metrics.connected_peers(self.swarm.connected_peers().count());
                if num_established.get() == 1 {
                    self.emit(Event::PeerConnected { peer: peer_id, address, relayed });
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established, .. } => {
                if num_established == 0 {
                    self.peers.remove(&peer_id);
                    self.message_rates.remove(&peer_id);
                    self.fetch_rates.remove(&peer_id);
                    self.metrics.connected_peers(self.swarm.connected_peers().count());
                    self.emit(Event::PeerDisconnected { peer: peer_id });
                } else if let Some(peer) = self.peers.get_mut(&peer_id) {
                    peer.connections = num_established as usize;
                }
            }
            SwarmEvent::NewListenAddr { listener_id, address } => {
                if let Some((relay, circuit)) = self.reservations.get(&listener_id) {
                    tracing::debug!(%relay, %circuit, "relay listener active");
                }
                self.emit(Event::ListenAddressAdded { address });
            }
            SwarmEvent::ListenerClosed { listener_id, reason, .. } => {
                if let Some((relay, _)) = self.reservations.remove(&listener_id) {
                    tracing::info!(%relay, ?reason, "relay reservation closed");
                }
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                if !is_relayed(&address) {
                    self.confirmed_direct.insert(address.clone());
                    self.set_reachability(Reachability::Public);
                }
                self.emit(Event::ExternalAddressConfirmed { address });
            }
            SwarmEvent::ExternalAddrExpired { address } => {
                self.confirmed_direct.remove(&address);
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(?peer_id, %error, "dial failed");
            }
            _ => {}
        }
    }

    fn handle_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Gossipsub(event) => {
                self.metrics.libp2p.record(&event);
                if let gossipsub::Event::Message { propagation_source, message_id, message } = event {
                    self.handle_message(propagation_source, message_id, message);
                }
            }
            BehaviourEvent::Identify(event) => {
                self.metrics.libp2p.record(&event);
                if let identify::Event::Received { peer_id, info, .. } = event {
                    self.handle_identify(peer_id, info);
                }
            }
            BehaviourEvent::Kademlia(event) => {
                self.metrics.libp2p.record(&event);
                self.handle_kademlia(event);
            }
            BehaviourEvent::Ping(event) => self.metrics.libp2p.record(&event),
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, address) in found {
                    self.dial_if_wanted(peer, vec![address]);
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Expired(_)) => {}
            BehaviourEvent::AutonatClient(event) => self.handle_autonat(event),
            BehaviourEvent::AutonatServer(event) => {
                tracing::debug!(client = %event.client, tested = %event.tested_addr, ok = event.result.is_ok(), "answered an AutoNAT probe");
            }
            BehaviourEvent::RelayClient(event) => self.handle_relay_client(event),
            BehaviourEvent::RelayServer(event) => {
                self.metrics.libp2p.record(&event);
                tracing::debug!(?event, "relay server");
            }
            BehaviourEvent::Dcutr(event) => {
                self.metrics.libp2p.record(&event);
                let dcutr::Event { remote_peer_id, result } = event;
                match result {
                    Ok(_) => {
                        self.emit(Event::HolePunched { peer: remote_peer_id });
                    }
                    Err(error) => {
                        self.emit(Event::HolePunchFailed { peer: remote_peer_id, reason: error.to_string() });
                    }
                }
            }
            BehaviourEvent::Fetch(event) => self.handle_fetch(event),
            BehaviourEvent::Decision(event) => self.handle_decision(event),
            BehaviourEvent::Limits(never) => match never {},
        }
    }

    fn handle_message(&mut self, source: PeerId, message_id: MessageId, message: gossipsub::Message) {
        let now = Instant::now();
        let ignore = |swarm: &mut Swarm<Behaviour>, acceptance| {
            swarm.behaviour_mut().gossipsub.report_message_validation_result(
                &message_id,
                &source,
                acceptance,
            );
        };
        if message.data.len() > MAX_ENVELOPE_LEN {
            self.metrics.dropped(DropReason::OversizedMessage);
            return ignore(&mut self.swarm, MessageAcceptance::Reject);
        }
        let limits = &self.config.limits;
        let bucket = self
            .message_rates
            .entry(source)
            .or_insert_with(|| TokenBucket::new(limits.peer_message_rate, limits.peer_message_burst, now));
        if !bucket.try_take(now) {
            self.metrics.dropped(DropReason::RateLimited);
            return ignore(&mut self.swarm, MessageAcceptance::Ignore);
        }
        let Some(topic) = Topic::parse(&self.config.network, &message.topic) else {
            return ignore(&mut self.swarm, MessageAcceptance::Ignore);
        };
        let envelope = match codec::decode_envelope(&message.data) {
            Ok(envelope) => envelope,
            Err(error) => {
                tracing::debug!(%source, %error, "malformed gossip message");
                self.metrics.dropped(DropReason::MalformedMessage);
                return ignore(&mut self.swarm, MessageAcceptance::Reject);
            }
        };
        if self.pending_validations.len() >= limits.max_pending_validations {
            self.metrics.dropped(DropReason::ValidationQueueFull);
            return ignore(&mut self.swarm, MessageAcceptance::Ignore);
        }
        let id = meshd_protocol::keccak256(&message.data);
        self.metrics.received();
        if !self.emit(Event::MessageReceived { id, source, topic, envelope }) {
            return ignore(&mut self.swarm, MessageAcceptance::Ignore);
        }
        let deadline = now + self.config.limits.validation_timeout;
        self.pending_validations.insert(id, PendingValidation { source, message_id, deadline });
    }

    /// Ignores messages the node gave no verdict on in time. The map holds at
    /// most [`crate::config::Limits::max_pending_validations`] entries, so a
    /// scan per second is cheap.
    fn expire_validations(&mut self) {
        let now = Instant::now();
        let expired: Vec<Hash32> =
            self.pending_validations.iter().filter(|(_, p)| p.deadline <= now).map(|(id, _)| *id).collect();
        for id in expired {
            if let Some(pending) = self.pending_validations.remove(&id) {
                self.metrics.dropped(DropReason::ValidationTimeout);
                self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                    &pending.message_id,
                    &pending.source,
                    MessageAcceptance::Ignore,
                );
            }
        }
    }

    fn handle_identify(&mut self, peer_id: PeerId, info: identify::Info) {
        if info.protocol_version != behaviour::identify_protocol(&self.config.network) {
            tracing::debug!(%peer_id, version = %info.protocol_version, "peer of another network");
            self.metrics.dropped(DropReason::ForeignNetwork);
            let _ = self.swarm.disconnect_peer_id(peer_id);
            return;
        }
        let kad_protocol = behaviour::kad_protocol(&self.config.network);
        let speaks_kad = info.protocols.contains(&kad_protocol);
        let is_relay = info.protocols.contains(&relay::HOP_PROTOCOL_NAME);
        let direct: Vec<Multiaddr> = info.listen_addrs.iter().filter(|a| !is_relayed(a)).cloned().collect();
        if speaks_kad {
            // Loopback addresses only make sense to peers on the same host:
            // they enter the routing table (and are handed to others) only
            // when the peer sees us on loopback too.
            let same_host = is_loopback(&info.observed_addr);
            for address in info.listen_addrs.iter().filter(|a| same_host || !is_loopback(a)) {
                if let Some(kademlia) = self.swarm.behaviour_mut().kademlia.as_mut() {
                    kademlia.add_address(&peer_id, address.clone());
                }
            }
        }
        let peer = self.peers.entry(peer_id).or_default();
        peer.is_relay = is_relay;
        for address in direct {
            if !peer.addresses.contains(&address) && peer.addresses.len() < MAX_ADDRESSES_PER_PEER {
                peer.addresses.push(address);
            }
        }
        if is_relay {
            self.reserve_relays();
        }
    }

    fn handle_kademlia(&mut self, event: kad::Event) {
        match event {
            kad::Event::RoutingUpdated { peer, addresses, .. } => {
                self.dial_if_wanted(peer, addresses.into_vec());
            }
            kad::Event::OutboundQueryProgressed {
                result: kad::QueryResult::GetClosestPeers(Ok(ok)), ..
            } => {
                for info in ok.peers {
                    self.dial_if_wanted(info.peer_id, info.addrs);
                }
            }
            _ => {}
        }
    }

    fn handle_autonat(&mut self, event: autonat::v2::client::Event) {
        match event.result {
            Ok(()) => {
                tracing::info!(address = %event.tested_addr, server = %event.server, "address reachable")
            }
            Err(error) => {
                tracing::info!(address = %event.tested_addr, server = %event.server, %error, "address not reachable");
                // One failed dial-back with no confirmed address is enough to
                // start reserving: waiting costs reachability, a needless
                // reservation costs a slot on a relay.
                if self.confirmed_direct.is_empty() {
                    self.set_reachability(Reachability::Private);
                }
            }
        }
    }

    fn handle_relay_client(&mut self, event: relay::client::Event) {
        tracing::debug!(?event, "relay client");
        if let relay::client::Event::ReservationReqAccepted { relay_peer_id, renewal: false, .. } = event {
            let address = self
                .reservations
                .values()
                .find(|(relay, _)| *relay == relay_peer_id)
                .map(|(_, circuit)| circuit.clone().with(Protocol::P2p(*self.swarm.local_peer_id())));
            if let Some(address) = address {
                self.emit(Event::RelayReserved { relay: relay_peer_id, address });
            }
        }
    }

    fn handle_fetch(&mut self, event: request_response::Event<Request, Response>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    self.handle_fetch_request(peer, request, channel);
                }
                request_response::Message::Response { request_id, response } => {
                    if let Some((ids, reply)) = self.outbound_fetches.remove(&request_id) {
                        let _ = reply.send(self.read_fetch_response(ids, response));
                    }
                }
            },
            request_response::Event::OutboundFailure { request_id, error, .. } => {
                if let Some((_, reply)) = self.outbound_fetches.remove(&request_id) {
                    let _ = reply.send(Err(FetchError::Failed(error.to_string())));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound fetch failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn handle_decision(&mut self, event: request_response::Event<decision::Request, Response>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    self.handle_decision_request(peer, request, channel);
                }
                request_response::Message::Response { request_id, response } => {
                    if let Some(reply) = self.outbound_decisions.remove(&request_id) {
                        let _ = reply.send(self.read_decision_response(response));
                    }
                }
            },
            request_response::Event::OutboundFailure { request_id, error, .. } => {
                if let Some(reply) = self.outbound_decisions.remove(&request_id) {
                    let _ = reply.send(Err(FetchError::Failed(error.to_string())));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound decision request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn handle_decision_request(
        &mut self,
        peer: PeerId,
        request: decision::Request,
        channel: ResponseChannel<Response>,
    ) {
        let refusal = if !self.take_fetch_token(peer) {
            Some((Status::RateLimited, DropReason::FetchRateLimited))
        } else if self.inbound_decisions.len() >= self.config.limits.max_pending_fetches {
            Some((Status::Busy, DropReason::FetchBusy))
        } else {
            None
        };
        if let Some((status, reason)) = refusal {
            self.metrics.dropped(reason);
            self.respond_decision(channel, Response::refusal(status));
            return;
        }
        let timeout = self.config.limits.fetch_timeout;
        let (sender, receiver) = oneshot::channel();
        let event = Event::DecisionRequested {
            peer,
            region: request.region,
            epoch: request.epoch,
            responder: FetchResponder { sender },
        };
        if !self.emit(event) {
            self.metrics.dropped(DropReason::FetchBusy);
            self.respond_decision(channel, Response::refusal(Status::Busy));
            return;
        }
        self.inbound_decisions.push(Box::pin(async move {
            let envelopes = tokio::time::timeout(timeout, receiver).await.ok().and_then(Result::ok);
            (channel, envelopes)
        }));
    }

    fn answer_decision(&mut self, channel: ResponseChannel<Response>, envelopes: Option<Vec<Vec<u8>>>) {
        self.metrics.fetch_served();
        let response = Response { status: Status::Ok, envelopes: envelopes.unwrap_or_default() };
        self.respond_decision(channel, response);
    }

    fn read_decision_response(&self, response: Response) -> Result<Vec<Envelope>, FetchError> {
        if response.status != Status::Ok {
            return Err(FetchError::Refused(response.status));
        }
        let mut envelopes = Vec::with_capacity(response.envelopes.len());
        for bytes in response.envelopes {
            match codec::decode_envelope(&bytes) {
                Ok(envelope) => envelopes.push(envelope),
                Err(_) => self.metrics.dropped(DropReason::MalformedFetchEnvelope),
            }
        }
        Ok(envelopes)
    }

    /// Sends a fetch response. The requester may have gone; then the response
    /// has nowhere to go. Requests only arrive while the protocol runs.
    fn respond_fetch(&mut self, channel: ResponseChannel<Response>, response: Response) {
        if let Some(fetch) = self.swarm.behaviour_mut().fetch.as_mut() {
            let _ = fetch.send_response(channel, response);
        }
    }

    /// Sends a decision response, as [`EventLoop::respond_fetch`].
    fn respond_decision(&mut self, channel: ResponseChannel<Response>, response: Response) {
        if let Some(decision) = self.swarm.behaviour_mut().decision.as_mut() {
            let _ = decision.send_response(channel, response);
        }
    }

    /// Takes one token of `peer`'s fetch rate (fetches and decision requests share it).
    fn take_fetch_token(&mut self, peer: PeerId) -> bool {
        let now = Instant::now();
        let limits = &self.config.limits;
        self.fetch_rates
            .entry(peer)
            .or_insert_with(|| TokenBucket::new(limits.fetch_rate, limits.fetch_burst, now))
            .try_take(now)
    }

    fn handle_fetch_request(&mut self, peer: PeerId, request: Request, channel: ResponseChannel<Response>) {
        let refusal = if !self.take_fetch_token(peer) {
            Some((Status::RateLimited, DropReason::FetchRateLimited))
        } else if matches!(request, Request::Oversized) {
            Some((Status::TooLarge, DropReason::OversizedFetchRequest))
        } else if self.inbound_fetches.len() >= self.config.limits.max_pending_fetches {
            Some((Status::Busy, DropReason::FetchBusy))
        } else {
            None
        };
        if let Some((status, reason)) = refusal {
            self.metrics.dropped(reason);
            self.respond_fetch(channel, Response::refusal(status));
            return;
        }
        let Request::Ids(ids) = request else { return };
        let timeout = self.config.limits.fetch_timeout;
        let (sender, receiver) = oneshot::channel();
        if !self.emit(Event::FetchRequested { peer, ids, responder: FetchResponder { sender } }) {
            self.metrics.dropped(DropReason::FetchBusy);
            self.respond_fetch(channel, Response::refusal(Status::Busy));
            return;
        }
        self.inbound_fetches.push(Box::pin(async move {
            let envelopes = tokio::time::timeout(timeout, receiver).await.ok().and_then(Result::ok);
            (channel, envelopes)
        }));
    }

    fn answer_fetch(&mut self, channel: ResponseChannel<Response>, envelopes: Option<Vec<Vec<u8>>>) {
        self.metrics.fetch_served();
        let response = Response { status: Status::Ok, envelopes: envelopes.unwrap_or_default() };
        self.respond_fetch(channel, response);
    }

    fn read_fetch_response(&self, ids: Vec<Hash32>, response: Response) -> Result<Fetched, FetchError> {
        if response.status != Status::Ok {
            return Err(FetchError::Refused(response.status));
        }
        let mut wanted: HashSet<Hash32> = ids.iter().copied().collect();
        let mut found = Vec::with_capacity(response.envelopes.len());
        for bytes in response.envelopes {
            let Ok(envelope) = codec::decode_envelope(&bytes) else {
                self.metrics.dropped(DropReason::MalformedFetchEnvelope);
                continue;
            };
            let id = meshd_protocol::keccak256(&bytes);
            if !wanted.remove(&id) {
                self.metrics.dropped(DropReason::UnrequestedFetchEnvelope);
                continue;
            }
            found.push((id, envelope));
        }
        let missing = ids.into_iter().filter(|id| wanted.contains(id)).collect();
        Ok(Fetched { found, missing })
    }

    // ---- reachability, relays and peers -----------------------------------

    fn set_reachability(&mut self, reachability: Reachability) {
        if self.reachability == reachability {
            return;
        }
        tracing::info!(?reachability, "reachability changed");
        self.reachability = reachability;
        self.metrics.reachability(reachability);
        self.emit(Event::ReachabilityChanged { reachability });
        if reachability == Reachability::Private {
            self.reserve_relays();
        }
    }

    /// Reserves slots on relays until [`Config::max_relay_reservations`] are
    /// held, preferring configured relays, then connected peers that relay.
    fn reserve_relays(&mut self) {
        if self.reachability != Reachability::Private || !self.config.relay_client {
            return;
        }
        let held: HashSet<PeerId> = self.reservations.values().map(|(relay, _)| *relay).collect();
        let mut candidates: Vec<(PeerId, Multiaddr)> = Vec::new();
        for address in &self.config.relays {
            if let Some(Protocol::P2p(relay)) = address.iter().last() {
                candidates.push((relay, address.clone()));
            }
        }
        for (peer_id, peer) in &self.peers {
            if peer.is_relay
                && let Some(address) = peer.addresses.first()
            {
                candidates.push((*peer_id, with_peer(address.clone(), *peer_id)));
            }
        }
        for (relay, address) in candidates {
            if self.reservations.len() >= self.config.max_relay_reservations {
                break;
            }
            if held.contains(&relay) || self.reservations.values().any(|(r, _)| *r == relay) {
                continue;
            }
            let circuit = address.with(Protocol::P2pCircuit);
            match self.swarm.listen_on(circuit.clone()) {
                Ok(listener) => {
                    tracing::info!(%relay, %circuit, "reserving a relay slot");
                    self.reservations.insert(listener, (relay, circuit));
                }
                Err(error) => tracing::warn!(%relay, %error, "relay reservation refused locally"),
            }
        }
    }

    fn dial_if_wanted(&mut self, peer: PeerId, addresses: Vec<Multiaddr>) {
        if peer == *self.swarm.local_peer_id()
            || self.swarm.is_connected(&peer)
            || self.swarm.connected_peers().count() >= self.config.target_peers
            || addresses.is_empty()
        {
            return;
        }
        let opts = DialOpts::peer_id(peer)
            .addresses(addresses)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        if let Err(error) = self.swarm.dial(opts) {
            tracing::debug!(%peer, %error, "discovery dial refused");
        }
    }

    fn connect_to_known_peers(&mut self) {
        let known: Vec<Multiaddr> = self.config.bootstrap.iter().chain(&self.config.peers).cloned().collect();
        for address in known {
            if let Some(Protocol::P2p(peer)) = address.iter().last() {
                if self.swarm.is_connected(&peer) {
                    continue;
                }
                if let Some(kademlia) = self.swarm.behaviour_mut().kademlia.as_mut() {
                    kademlia.add_address(&peer, address.clone());
                }
            }
            if let Err(error) = self.swarm.dial(address.clone()) {
                tracing::debug!(%address, %error, "bootstrap dial refused");
            }
        }
    }

    /// Runs every [`Config::maintenance_interval`]: redials known peers when
    /// alone, looks for more peers below the target, renews relay reservations.
    fn maintain(&mut self) {
        let connected = self.swarm.connected_peers().count();
        if connected == 0 {
            self.connect_to_known_peers();
        } else {
            let persistent: Vec<Multiaddr> = self.config.peers.clone();
            for address in persistent {
                if let Some(Protocol::P2p(peer)) = address.iter().last()
                    && !self.swarm.is_connected(&peer)
                {
                    let _ = self.swarm.dial(address);
                }
            }
        }
        if connected > 0
            && connected < self.config.target_peers
            && let Some(kademlia) = self.swarm.behaviour_mut().kademlia.as_mut()
        {
            kademlia.get_closest_peers(PeerId::random());
        }
        self.reserve_relays();
    }
}

/// Addresses remembered per peer: listen addresses of a few interfaces and
/// transports; a peer announcing hundreds gains nothing.
const MAX_ADDRESSES_PER_PEER: usize = 8;

fn is_loopback(address: &Multiaddr) -> bool {
    match address.iter().next() {
        Some(Protocol::Ip4(ip)) => ip.is_loopback(),
        Some(Protocol::Ip6(ip)) => ip.is_loopback(),
        _ => false,
    }
}

fn is_relayed(address: &Multiaddr) -> bool {
    address.iter().any(|p| p == Protocol::P2pCircuit)
}

fn with_peer(address: Multiaddr, peer: PeerId) -> Multiaddr {
    if matches!(address.iter().last(), Some(Protocol::P2p(_))) {
        address
    } else {
        address.with(Protocol::P2p(peer))
    }
}
