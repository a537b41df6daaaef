//! Gossipsub v1.1 peer scoring: the parameters and why they have their values.
//!
//! A peer's score is `Σ topic_weight · (P1 + P2 + P3 + P3b + P4)` over topics
//! (its positive part capped by [`TOPIC_SCORE_CAP`]) plus the IP-colocation
//! (P6) and behaviour (P7) penalties. The thresholds act on the total:
//!
//! | score below | effect |
//! |---|---|
//! | [`GOSSIP_THRESHOLD`] −10 | no IHAVE/IWANT gossip with the peer |
//! | [`PUBLISH_THRESHOLD`] −50 | our own messages are not flood-published to it |
//! | [`GRAYLIST_THRESHOLD`] −80 | every RPC from the peer is ignored (graylisted) |
//!
//! The design goal: a peer that forwards messages the node proves invalid
//! (bad signature, malformed envelope) is graylisted by its **third** such
//! message, whatever good behaviour it showed before, and an honest peer in a
//! quiet region is never penalised for the quiet.
//!
//! - **P4, invalid messages**: weight −20 on the square of the count, which
//!   decays over an hour. 1 invalid → −20 (below the gossip threshold),
//!   2 → −80, 3 → −180. Positive contributions are capped at +30, so after
//!   three the score is at most −150: graylisted. Honest peers never forward an
//!   invalid message (gossipsub forwards only what the node accepted), so the
//!   first one is already evidence; rules that depend on time return *ignore*,
//!   not *reject*, and cost nothing.
//! - **P1, time in mesh**: +0.01 per second in the mesh, capped at +10 (after
//!   about 17 minutes): stable mesh members win ties when the mesh is pruned.
//! - **P2, first deliveries**: +1 per message first delivered by the peer,
//!   capped at +20, decaying over 10 minutes: peers that actually carry the
//!   region's reports rank above idle ones.
//! - **P3/P3b, mesh delivery rate**: off. Region topics are quiet (a few
//!   reports per gateway per epoch) and a delivery-rate threshold punishes
//!   honest mesh members of quiet topics; the same lesson made low-rate topics
//!   of other large gossip networks drop P3.
//! - **P5, application score**: off; the node has no peer judgement of its own yet.
//! - **P6, IP colocation**: −10 per square of the peers beyond
//!   [`crate::Config::ip_colocation_threshold`] on one IP: Sybils on one host
//!   lose standing fast; a handful of gateways behind one home NAT do not.
//! - **P7, behaviour**: −10 per square of the count above 6 (broken IWANT
//!   promises, GRAFTs during backoff), decaying over 10 minutes: a few are
//!   latency, many are an attack.
//!
//! "Decaying over" a window means a tenth of the count is left at its end;
//! counters decay in steps every [`DECAY_INTERVAL`] (10 s).
//!
//! Scores are kept for an hour after a peer disconnects, so reconnecting does
//! not wash a bad score.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use libp2p::gossipsub::{
    PeerScoreParams, PeerScoreThresholds, TopicScoreParams, score_parameter_decay_with_base,
};

/// Below this, no gossip (IHAVE/IWANT) is exchanged with the peer.
pub const GOSSIP_THRESHOLD: f64 = -10.0;
/// Below this, our published messages are not flood-published to the peer.
pub const PUBLISH_THRESHOLD: f64 = -50.0;
/// Below this, every RPC from the peer is ignored.
pub const GRAYLIST_THRESHOLD: f64 = -80.0;
/// Peer exchange is off ([`crate::Config`] has no PX); the threshold only
/// needs to be a valid positive value: the P2 cap, a proven carrier.
pub const ACCEPT_PX_THRESHOLD: f64 = 20.0;
/// Median mesh score under which opportunistic grafting looks for better
/// peers: half the P1 cap, a mesh of newcomers.
pub const OPPORTUNISTIC_GRAFT_THRESHOLD: f64 = 5.0;
/// Cap of the positive part of the topic scores: P1 cap + P2 cap, so good
/// history cannot shield three invalid messages.
pub const TOPIC_SCORE_CAP: f64 = 30.0;
/// Weight of P4 (applied to the square of the invalid-message count).
pub const INVALID_MESSAGE_WEIGHT: f64 = -20.0;
/// How long scores of disconnected peers are kept.
pub const RETAIN_SCORE: Duration = Duration::from_secs(3600);
/// How often the counters behind the scores decay. Every refresh walks every
/// known peer's statistics, so with gossipsub's default of one second it was
/// a standing cost on every node (the larger part of an idle mesh's gossip
/// CPU) for a resolution nothing needs: the shortest decay window is ten
/// minutes, sixty refreshes at this interval, and time in the mesh (P1) moves
/// in 10 s steps of its 17-minute ramp.
pub const DECAY_INTERVAL: Duration = Duration::from_secs(10);
/// What is left of a counter at the end of its decay window: a tenth.
pub const DECAY_TO: f64 = 0.1;

/// The per-refresh decay factor that leaves [`DECAY_TO`] of a counter after `window`.
pub fn decay(window: Duration) -> f64 {
    score_parameter_decay_with_base(window, DECAY_INTERVAL, DECAY_TO)
}

/// The peer-level parameters (topics are added per subscription).
pub fn peer_score_params(ip_colocation_threshold: f64) -> PeerScoreParams {
    PeerScoreParams {
        topics: HashMap::new(),
        topic_score_cap: TOPIC_SCORE_CAP,
        app_specific_weight: 0.0,
        ip_colocation_factor_weight: -10.0,
        ip_colocation_factor_threshold: ip_colocation_threshold.max(1.0),
        // Peers on the loopback interface run on this very machine (a test
        // mesh, a local demo): the colocation penalty guards against Sybils
        // on one remote host, and would graylist a local mesh of more than
        // `ip_colocation_threshold` gateways. No remote peer has these addresses.
        ip_colocation_factor_whitelist: HashSet::from([
            std::net::IpAddr::from(std::net::Ipv4Addr::LOCALHOST),
            std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        ]),
        behaviour_penalty_weight: -10.0,
        behaviour_penalty_threshold: 6.0,
        behaviour_penalty_decay: decay(Duration::from_secs(600)),
        decay_interval: DECAY_INTERVAL,
        decay_to_zero: 0.01,
        retain_score: RETAIN_SCORE,
        // A peer too slow to take our messages loses a little standing; fifty
        // slow events weigh as much as one behaviour penalty (gossipsub's
        // ratio). It is forgotten within a refresh or two: slowness is a
        // moment, not a record.
        slow_peer_weight: -0.2,
        slow_peer_threshold: 0.0,
        slow_peer_decay: decay(DECAY_INTERVAL),
    }
}

/// The thresholds in the table of the module docs.
pub fn thresholds() -> PeerScoreThresholds {
    PeerScoreThresholds {
        gossip_threshold: GOSSIP_THRESHOLD,
        publish_threshold: PUBLISH_THRESHOLD,
        graylist_threshold: GRAYLIST_THRESHOLD,
        accept_px_threshold: ACCEPT_PX_THRESHOLD,
        opportunistic_graft_threshold: OPPORTUNISTIC_GRAFT_THRESHOLD,
    }
}

/// The parameters of every topic (regions and global weigh the same: an
/// invalid summary is as bad as an invalid report).
pub fn topic_params() -> TopicScoreParams {
    TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 1000.0,
        first_message_deliveries_weight: 1.0,
        first_message_deliveries_decay: decay(Duration::from_secs(600)),
        first_message_deliveries_cap: 20.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_message_deliveries_decay: 0.5,
        mesh_message_deliveries_cap: 1.0,
        mesh_message_deliveries_threshold: 1.0,
        mesh_message_deliveries_window: Duration::from_millis(10),
        mesh_message_deliveries_activation: Duration::from_secs(5),
        mesh_failure_penalty_weight: 0.0,
        mesh_failure_penalty_decay: 0.5,
        invalid_message_deliveries_weight: INVALID_MESSAGE_WEIGHT,
        invalid_message_deliveries_decay: decay(Duration::from_secs(3600)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_pass_gossipsub_validation() {
        assert_eq!(peer_score_params(10.0).validate(), Ok(()));
        assert_eq!(thresholds().validate(), Ok(()));
        assert_eq!(topic_params().validate(), Ok(()));
    }

    #[test]
    fn counters_keep_a_tenth_after_their_window() {
        let hour = Duration::from_secs(3600);
        let refreshes = (hour.as_secs_f64() / DECAY_INTERVAL.as_secs_f64()) as i32;
        let left = decay(hour).powi(refreshes);
        assert!((left - DECAY_TO).abs() < 1e-9, "{left}");
        assert!(decay(Duration::from_secs(600)) < decay(hour));
    }

    #[test]
    fn third_invalid_message_graylists_even_a_peer_at_the_positive_cap() {
        let p4 = |count: f64| INVALID_MESSAGE_WEIGHT * count * count;
        assert!(p4(1.0) < GOSSIP_THRESHOLD);
        assert!(p4(2.0) + TOPIC_SCORE_CAP > GRAYLIST_THRESHOLD);
        assert!(p4(3.0) + TOPIC_SCORE_CAP < GRAYLIST_THRESHOLD);
    }
}
