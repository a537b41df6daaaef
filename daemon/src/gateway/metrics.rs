//! The node's counters and the gateway's gauges in the daemon's one
//! Prometheus registry (the gossip layer registers its own in the same one).

use meshd_node::Metrics;
use meshd_node::anchors::AnchorBookMetrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Label of a refusal counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

/// The node's metrics, exported as `meshd_node_*`, and the gateway's state
/// as `meshd_gateway_*`.
#[derive(Debug)]
pub struct NodeMetrics {
    reports_admitted: Counter,
    refused: Family<ReasonLabel, Counter>,
    signatures_verified: Counter,
    duplicates: Counter,
    proposals_sent: Counter,
    votes_sent: Counter,
    conflicting_votes_refused: Counter,
    published: Counter,
    published_bytes: Counter,
    fetches: Counter,
    finalized: Counter,
    caught_up: Counter,
    outputs_dropped: Counter,
    equivocations: Counter,
    current_epoch: Gauge,
    last_finalized_epoch: Gauge,
    stalled: Gauge,
    finality: Histogram,
    last: Metrics,
    anchor_certified: Counter,
    anchor_complete: Counter,
    anchor_incomplete: Counter,
    anchor_refused: Family<ReasonLabel, Counter>,
    anchor_last: AnchorBookMetrics,
}

/// Buckets of the finality latency, seconds: from one message delay on a
/// LAN (50 ms) to several consensus rounds across the internet (30 s).
const FINALITY_BUCKETS: [f64; 12] = [0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0];

impl NodeMetrics {
    /// Registers every metric in `registry`.
    pub fn new(registry: &mut Registry) -> NodeMetrics {
        let metrics = NodeMetrics {
            reports_admitted: Counter::default(),
            refused: Family::default(),
            signatures_verified: Counter::default(),
            duplicates: Counter::default(),
            proposals_sent: Counter::default(),
            votes_sent: Counter::default(),
            conflicting_votes_refused: Counter::default(),
            published: Counter::default(),
            published_bytes: Counter::default(),
            fetches: Counter::default(),
            finalized: Counter::default(),
            caught_up: Counter::default(),
            outputs_dropped: Counter::default(),
            equivocations: Counter::default(),
            current_epoch: Gauge::default(),
            last_finalized_epoch: Gauge::default(),
            stalled: Gauge::default(),
            finality: Histogram::new(FINALITY_BUCKETS),
            last: Metrics::default(),
            anchor_certified: Counter::default(),
            anchor_complete: Counter::default(),
            anchor_incomplete: Counter::default(),
            anchor_refused: Family::default(),
            anchor_last: AnchorBookMetrics::default(),
        };
        let node = registry.sub_registry_with_prefix("meshd_node");
        for (name, help, counter) in [
            ("reports_admitted", "Reports admitted to a pool", &metrics.reports_admitted),
            ("signatures_verified", "Envelope signatures verified", &metrics.signatures_verified),
            ("duplicates", "Consensus messages dropped as copies before verification", &metrics.duplicates),
            ("proposals_sent", "Proposals signed and sent", &metrics.proposals_sent),
            ("votes_sent", "Votes signed and sent", &metrics.votes_sent),
            (
                "conflicting_votes_refused",
                "Votes not signed because they would conflict with a stored one",
                &metrics.conflicting_votes_refused,
            ),
            ("published", "Messages published", &metrics.published),
            ("published_bytes", "Bytes published", &metrics.published_bytes),
            ("fetches", "Fetches sent", &metrics.fetches),
            ("finalized", "Epochs finalized", &metrics.finalized),
            ("caught_up", "Epochs finalized from a fetched certificate", &metrics.caught_up),
            ("outputs_dropped", "Node outputs dropped on a full queue", &metrics.outputs_dropped),
            ("equivocations", "Conflicting proposals or votes seen from one member", &metrics.equivocations),
        ] {
            node.register(name, help, counter.clone());
        }
        node.register("refused", "Messages refused, by reason", metrics.refused.clone());
        let gateway = registry.sub_registry_with_prefix("meshd_gateway");
        gateway.register("current_epoch", "The epoch now open", metrics.current_epoch.clone());
        gateway.register(
            "last_finalized_epoch",
            "The latest epoch finalized (-1 before the first)",
            metrics.last_finalized_epoch.clone(),
        );
        gateway.register(
            "stalled",
            "1 while the oldest undecided epoch is stalled, else 0",
            metrics.stalled.clone(),
        );
        gateway.register(
            "finality_seconds",
            "Time from the end of an epoch's grace period (when deciding starts) to its finalization here",
            metrics.finality.clone(),
        );
        let anchors = registry.sub_registry_with_prefix("meshd_anchor");
        for (name, help, counter) in [
            (
                "summaries_certified",
                "Regions' summaries held for anchoring (own region's and certified ones from the global topic)",
                &metrics.anchor_certified,
            ),
            (
                "ranges_complete",
                "Ranges signed with every expected region's summaries",
                &metrics.anchor_complete,
            ),
            (
                "ranges_incomplete",
                "Ranges signed (or skipped when empty) after the wait with summaries missing",
                &metrics.anchor_incomplete,
            ),
        ] {
            anchors.register(name, help, counter.clone());
        }
        anchors.register(
            "summaries_refused",
            "Summaries and certificates from the global topic not taken for anchoring, by reason",
            metrics.anchor_refused.clone(),
        );
        metrics.last_finalized_epoch.set(-1);
        metrics
    }

    /// Brings the anchor book's counters up to date.
    pub fn anchor_book(&mut self, now: &AnchorBookMetrics) {
        let last = &self.anchor_last;
        self.anchor_certified.inc_by(now.certified.saturating_sub(last.certified));
        self.anchor_complete.inc_by(now.complete.saturating_sub(last.complete));
        self.anchor_incomplete.inc_by(now.incomplete.saturating_sub(last.incomplete));
        self.anchor_last = *now;
    }

    /// Counts a summary or certificate the anchor book refused.
    pub fn anchor_book_refused(&self, reason: &str) {
        self.anchor_refused.get_or_create(&ReasonLabel { reason: reason.to_owned() }).inc();
    }

    /// Brings the exported counters up to the node's.
    pub fn update(&mut self, now: &Metrics) {
        let last = &self.last;
        for (counter, new, old) in [
            (&self.reports_admitted, now.reports_admitted, last.reports_admitted),
            (&self.signatures_verified, now.signatures_verified, last.signatures_verified),
            (&self.duplicates, now.duplicates, last.duplicates),
            (&self.proposals_sent, now.proposals_sent, last.proposals_sent),
            (&self.votes_sent, now.votes_sent, last.votes_sent),
            (&self.conflicting_votes_refused, now.conflicting_votes_refused, last.conflicting_votes_refused),
            (&self.published, now.published, last.published),
            (&self.published_bytes, now.published_bytes, last.published_bytes),
            (&self.fetches, now.fetches, last.fetches),
            (&self.finalized, now.finalized, last.finalized),
            (&self.caught_up, now.caught_up, last.caught_up),
            (&self.outputs_dropped, now.outputs_dropped, last.outputs_dropped),
            (&self.equivocations, now.equivocations, last.equivocations),
        ] {
            counter.inc_by(new.saturating_sub(old));
        }
        for (reason, count) in &now.refused {
            let old = last.refused.get(reason).copied().unwrap_or(0);
            self.refused
                .get_or_create(&ReasonLabel { reason: (*reason).to_owned() })
                .inc_by(count - old.min(*count));
        }
        self.last = now.clone();
    }

    /// Records one epoch's finality latency.
    pub fn finalized_after(&self, latency_ms: u64) {
        self.finality.observe(latency_ms as f64 / 1000.0);
    }

    /// Sets the epoch gauges.
    pub fn epochs(&self, current: u64, last_finalized: Option<u64>, stalled: bool) {
        self.current_epoch.set(i64::try_from(current).unwrap_or(i64::MAX));
        self.last_finalized_epoch.set(last_finalized.map_or(-1, |e| i64::try_from(e).unwrap_or(i64::MAX)));
        self.stalled.set(i64::from(stalled));
    }
}
