//! Per-instance metrics, registered into the caller's registry.
//!
//! Never global: a thousand simulated nodes in one process each have their own.
//! libp2p's own metrics (swarm, identify, kad, ping, relay, dcutr, bandwidth)
//! are under the `libp2p_` prefix, gossipsub's internals under `gossipsub_`,
//! and ours under `meshd_gossip_`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::event::{Reachability, Verdict};

/// Why something a peer sent was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// A gossip message over the envelope size limit.
    OversizedMessage,
    /// A gossip message that is not a valid envelope.
    MalformedMessage,
    /// A gossip message from a peer over its message rate.
    RateLimited,
    /// A gossip message that arrived while the event queue was full.
    EventQueueFull,
    /// A gossip message that arrived while too many awaited a verdict.
    ValidationQueueFull,
    /// A gossip message the node gave no verdict on in time.
    ValidationTimeout,
    /// A fetch request over our id limit.
    OversizedFetchRequest,
    /// A fetch request from a peer over its fetch rate.
    FetchRateLimited,
    /// A fetch request that arrived while too many were pending.
    FetchBusy,
    /// An envelope in a fetch response that is not a valid envelope.
    MalformedFetchEnvelope,
    /// An envelope in a fetch response with an id we did not ask for.
    UnrequestedFetchEnvelope,
    /// A peer of another network (identify protocol version) was disconnected.
    ForeignNetwork,
}

impl DropReason {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::OversizedMessage => "oversized_message",
            DropReason::MalformedMessage => "malformed_message",
            DropReason::RateLimited => "rate_limited",
            DropReason::EventQueueFull => "event_queue_full",
            DropReason::ValidationQueueFull => "validation_queue_full",
            DropReason::ValidationTimeout => "validation_timeout",
            DropReason::OversizedFetchRequest => "oversized_fetch_request",
            DropReason::FetchRateLimited => "fetch_rate_limited",
            DropReason::FetchBusy => "fetch_busy",
            DropReason::MalformedFetchEnvelope => "malformed_fetch_envelope",
            DropReason::UnrequestedFetchEnvelope => "unrequested_fetch_envelope",
            DropReason::ForeignNetwork => "foreign_network",
        }
    }
}

type Labels = [(&'static str, &'static str); 1];

/// The gossip layer's own counters, plus libp2p's recorder.
pub(crate) struct Metrics {
    pub(crate) libp2p: libp2p::metrics::Metrics,
    dropped: Family<Labels, Counter>,
    received: Counter,
    verdicts: Family<Labels, Counter>,
    fetches_served: Counter,
    fetches_sent: Counter,
    connected_peers: Gauge,
    reachability: Gauge,
}

impl Metrics {
    pub(crate) fn new(registry: &mut Registry) -> Self {
        let libp2p = libp2p::metrics::Metrics::new(registry);
        let ours = registry.sub_registry_with_prefix("meshd_gossip");
        let metrics = Metrics {
            libp2p,
            dropped: Family::default(),
            received: Counter::default(),
            verdicts: Family::default(),
            fetches_served: Counter::default(),
            fetches_sent: Counter::default(),
            connected_peers: Gauge::default(),
            reachability: Gauge::default(),
        };
        ours.register(
            "dropped",
            "Messages, requests and responses dropped, by reason",
            metrics.dropped.clone(),
        );
        ours.register("received", "Messages handed to the node for validation", metrics.received.clone());
        ours.register("verdicts", "Verdicts reported by the node, by verdict", metrics.verdicts.clone());
        ours.register(
            "fetches_served",
            "Fetch requests answered with envelopes",
            metrics.fetches_served.clone(),
        );
        ours.register("fetches_sent", "Fetch requests sent", metrics.fetches_sent.clone());
        ours.register(
            "connected_peers",
            "Peers with at least one connection",
            metrics.connected_peers.clone(),
        );
        ours.register(
            "reachability",
            "AutoNAT reachability: 0 unknown, 1 private, 2 public",
            metrics.reachability.clone(),
        );
        metrics
    }

    pub(crate) fn dropped(&self, reason: DropReason) {
        self.dropped.get_or_create(&[("reason", reason.as_str())]).inc();
    }

    pub(crate) fn received(&self) {
        self.received.inc();
    }

    pub(crate) fn verdict(&self, verdict: Verdict) {
        let label = match verdict {
            Verdict::Accept => "accept",
            Verdict::Reject => "reject",
            Verdict::Ignore => "ignore",
        };
        self.verdicts.get_or_create(&[("verdict", label)]).inc();
    }

    pub(crate) fn fetch_served(&self) {
        self.fetches_served.inc();
    }

    pub(crate) fn fetch_sent(&self) {
        self.fetches_sent.inc();
    }

    pub(crate) fn connected_peers(&self, count: usize) {
        self.connected_peers.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    pub(crate) fn reachability(&self, reachability: Reachability) {
        self.reachability.set(match reachability {
            Reachability::Unknown => 0,
            Reachability::Private => 1,
            Reachability::Public => 2,
        });
    }
}
