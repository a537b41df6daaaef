//! meshd's simulator: thousands of gateways on one machine.
//!
//! # Deterministic mode
//!
//! [`simulate`] builds a [`world::World`] from a [`scenario::Scenario`]
//! (gateways placed, keyed, grouped into committee regions, radio links
//! from free-space path loss, clutter, log-normal shadowing and the noise
//! floor, adversaries assigned) and runs every region as a shard of real
//! [`meshd_node::Node`] state machines in virtual time ([`engine`]): the
//! network model (per-link log-normal latency, jitter, loss, uplink
//! bandwidth, partitions), crashes, churn and restarts from what was
//! persisted, and the adversaries' rewriting of what they send. The
//! [`report::Report`] carries finality, gossip delivery and latency,
//! bandwidth, memory, rewards by role, anchors against a recomputed ground
//! truth, and a digest of every event: same scenario and seed, same digest.
//!
//! ```text
//! let scenario = Scenario::parse(&std::fs::read_to_string("scenarios/smoke.toml")?)?;
//! let report = meshd_simulations::simulate(&scenario, 2, &Progress::default())?;
//! println!("{}", report.table());
//! ```
//!
//! # Real-stack mode
//!
//! [`real::run`] starts every gateway's real gossip layer in this process on
//! libp2p's memory transport and measures delivery and latency in wall-clock
//! time; the same scenario files (gateways, seed, `real_stack` table), the
//! same report.
#![deny(missing_docs)]

pub mod engine;
pub mod meter;
mod plain;
pub mod real;
pub mod report;
pub mod scenario;
pub mod stats;
pub mod world;

use std::collections::BTreeMap;

use meshd_protocol::{Hash32, keccak256};

use crate::engine::{GENESIS_MS, Progress, ShardResult};
use crate::report::{
    Anchors, Bandwidth, Check, EpochFinality, FaultStats, Gossip, Memory, MeterStats, RadioStats,
    RegionDetail, Report, Rewards, RoleRewards,
};
use crate::scenario::Scenario;
use crate::stats::{Histogram, percentiles, spread};
use crate::world::{Role, World, WorldError};

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The world could not be built.
    #[error(transparent)]
    World(#[from] WorldError),
    /// The epoch settings make no clock.
    #[error("epoch_ms and grace_ms make no epoch clock")]
    Clock,
}

/// Runs a scenario in deterministic mode on `threads` worker threads.
pub fn simulate(s: &Scenario, threads: usize, progress: &Progress) -> Result<Report, SimError> {
    let world = World::build(s)?;
    let clock = engine::clock(s).ok_or(SimError::Clock)?;
    let shards = engine::run(s, &world, clock, threads, progress);
    Ok(assemble(s, &world, &shards))
}

/// The virtual time a run covers at most, ms (every shard stops by then).
pub fn virtual_span_ms(s: &Scenario) -> u64 {
    engine::clock(s)
        .and_then(|c| c.decides_at_ms(s.epochs - 1 + engine::DEADLINE_EPOCHS).ok())
        .map_or(0, |t| t - GENESIS_MS)
}

fn assemble(s: &Scenario, world: &World, shards: &[ShardResult]) -> Report {
    let mut report = Report {
        scenario: s.name.clone(),
        mode: "deterministic".into(),
        seed: s.seed,
        gateways: world.gateways.len(),
        regions: shards.len(),
        epochs: s.epochs,
        ..Report::default()
    };
    // The digest: every shard's, in region order.
    let mut digest_input = Vec::with_capacity(shards.len() * 40);
    for sh in shards {
        digest_input.extend_from_slice(&sh.region.0.to_le_bytes());
        digest_input.extend_from_slice(&sh.digest.0);
    }
    report.determinism_digest = hex::encode(keccak256(&digest_input).0);
    report.events = shards.iter().map(|sh| sh.events).sum();
    report.virtual_s = virtual_span_ms(s) as f64 / 1000.0;
    for e in 0..s.epochs {
        let mut latencies: Vec<u64> = Vec::new();
        let mut finalized = 0;
        for sh in shards {
            if sh.decided.contains_key(&e) {
                finalized += 1;
            }
            latencies.extend(sh.finality_ms.get(&e).into_iter().flatten());
        }
        report.finality.push(EpochFinality {
            epoch: e,
            regions_finalized: finalized,
            regions: shards.len(),
            latency: percentiles(&mut latencies),
        });
    }
    for sh in shards {
        report.region_detail.push(RegionDetail {
            region: format!("{:x}", sh.region.0),
            gateways: sh.members.len(),
            adversaries: sh.members.iter().filter(|g| world.gateways[**g].role != Role::Honest).count(),
            finalized: sh.decided.len(),
            ground_truth_matches: sh.truth_matches,
        });
    }
    let mut latency = Histogram::default();
    let (mut intended, mut delivered) = (0, 0);
    let mut sent = Vec::new();
    let mut received = Vec::new();
    let mut global = 0u64;
    let epochs = s.epochs.max(1);
    for sh in shards {
        latency.merge(&sh.gossip_latency);
        intended += sh.gossip_intended;
        delivered += sh.gossip_delivered;
        sent.extend(sh.sent_bytes.iter().map(|b| b / epochs));
        received.extend(sh.received_bytes.iter().map(|b| b / epochs));
        global += sh.global_bytes;
    }
    report.gossip = Gossip {
        intended,
        delivered,
        delivery_ratio: if intended == 0 { 1.0 } else { delivered as f64 / intended as f64 },
        latency: latency.summary(),
    };
    // Each summary is published by every member that finalized it; a
    // subscriber receives each distinct message once.
    let members: f64 = shards.iter().map(|sh| sh.members.len() as f64).sum::<f64>().max(1.0);
    report.bandwidth = Bandwidth {
        sent_per_epoch: spread(&mut sent),
        received_per_epoch: spread(&mut received),
        global_topic_per_epoch: global as f64 / epochs as f64 / members * shards.len() as f64,
    };
    let peak = report::peak_rss_bytes();
    report.memory =
        Memory { peak_rss_bytes: peak, per_node_bytes: peak / world.gateways.len().max(1) as u64 };
    rewards(&mut report, world, shards);
    anchors(&mut report, shards);
    report.radio = RadioStats {
        beacons: shards.iter().map(|sh| sh.beacons).sum(),
        heard: shards.iter().map(|sh| sh.heard).sum(),
        heard_elsewhere: shards.iter().map(|sh| sh.heard_elsewhere).sum(),
        mean_links: world.mean_hearers(),
        noise_floor_dbm: world.noise_floor_dbm,
    };
    report.meters = meters(s, shards);
    report.faults = FaultStats {
        crashes: shards.iter().map(|sh| sh.crashes).sum(),
        restarts: shards.iter().map(|sh| sh.restarts).sum(),
    };
    for sh in shards {
        for (reason, count) in &sh.refused {
            *report.refused.entry((*reason).to_string()).or_default() += count;
        }
        report.forks.extend(sh.forks.iter().cloned());
    }
    checks(&mut report, s);
    report
}

fn rewards(report: &mut Report, world: &World, shards: &[ShardResult]) {
    let mut by_role: BTreeMap<String, RoleRewards> = BTreeMap::new();
    let mut r = Rewards::default();
    for g in &world.gateways {
        by_role.entry(g.role.label().into()).or_default().gateways += 1;
    }
    for sh in shards {
        for (k, &g) in sh.members.iter().enumerate() {
            let role = world.gateways[g].role;
            by_role.entry(role.label().into()).or_default().units += sh.units[k];
            if matches!(role, Role::Sybil(_)) {
                r.sybil_units += sh.units[k];
                r.sybil_honest_coverage_units += sh.honest_units[k];
            }
        }
        r.forged_published += sh.forged_published;
        r.forged_counted += sh.forged_counted;
        r.sybil_forged_counted += sh.sybil_forged_counted;
        r.sybil_forged_listed += sh.sybil_forged_listed;
        r.excluded_forged += sh.excluded_forged;
        r.excluded_real += sh.excluded_real;
        r.listed_real += sh.listed_real;
        r.real_above_free_space += sh.real_above_free_space;
        r.real_open_site += sh.real_open_site;
        r.forged_units += sh.forged_units;
        r.rewards_root_recomputed += sh.rewards_root_matches;
        r.decided += sh.decided.values().filter(|d| d.summary.is_some()).count() as u64;
    }
    for v in by_role.values_mut() {
        v.units_per_gateway = v.units as f64 / v.gateways.max(1) as f64;
    }
    r.by_role = by_role;
    report.rewards = r;
}

fn anchors(report: &mut Report, shards: &[ShardResult]) {
    let mut a = Anchors::default();
    for sh in shards {
        a.signed += sh.anchors.len() as u64;
        a.match_decided += sh.anchors_match_decided;
        a.match_ground_truth += sh.anchors_match_truth;
        a.summaries_compared += sh.truth_compared;
        a.summaries_match_ground_truth += sh.truth_matches;
    }
    report.anchors = a;
}

fn meters(s: &Scenario, shards: &[ShardResult]) -> MeterStats {
    let mut model = meter::MeterModel::new(s);
    let mut stats = MeterStats { count: model.len(), ..MeterStats::default() };
    if model.is_empty() {
        return stats;
    }
    let mut decided = vec![0u64; s.epochs as usize];
    for sh in shards {
        stats.fed += sh.meter_readings_fed;
        stats.attested += sh.meter_attested;
        for (reason, count) in &sh.meter_refused {
            *stats.refused.entry((*reason).to_string()).or_default() += count;
        }
        for (e, wh) in &sh.energy_decided_wh {
            if let Some(d) = decided.get_mut(*e as usize) {
                *d += wh;
            }
        }
    }
    stats.energy_decided_wh_per_epoch = decided;
    let interval_ms = s.meters.interval_s * 1000;
    let mut per_epoch = vec![0u64; s.epochs as usize];
    let end = GENESIS_MS + s.epochs * s.epoch_ms;
    let mut t = GENESIS_MS + interval_ms;
    while t <= end {
        let epoch = ((t - 1 - GENESIS_MS) / s.epoch_ms) as usize;
        for reading in model.production(t) {
            stats.readings += 1;
            stats.outages += u64::from(reading.outage);
            if let Some(e) = per_epoch.get_mut(epoch) {
                *e += reading.wh;
            }
        }
        t += interval_ms;
    }
    stats.energy_wh_per_epoch = per_epoch;
    stats
}

fn checks(report: &mut Report, s: &Scenario) {
    let mut checks = vec![Check {
        name: "no_fork".into(),
        passed: report.forks.is_empty(),
        detail: format!("{} forks", report.forks.len()),
    }];
    let a = &report.anchors;
    checks.push(Check {
        name: "anchors_match_decided_summaries".into(),
        passed: a.match_decided == a.signed,
        detail: format!("{} of {}", a.match_decided, a.signed),
    });
    let r = &report.rewards;
    checks.push(Check {
        name: "reward_roots_recomputed".into(),
        passed: r.rewards_root_recomputed == r.decided,
        detail: format!("{} of {}", r.rewards_root_recomputed, r.decided),
    });
    if s.adversaries.forged_witnesses > 0 {
        checks.push(Check {
            name: "forged_witnesses_earn_nothing".into(),
            passed: r.forged_units == 0,
            detail: format!("{} forged reports counted, {} units", r.forged_counted, r.forged_units),
        });
    }
    if s.adversaries.sybil_rings > 0 {
        checks.push(Check {
            name: "sybil_ring_earns_no_more_than_its_coverage".into(),
            passed: r.sybil_units <= r.sybil_honest_coverage_units,
            detail: format!(
                "{} units vs {} from real coverage; {} intra-ring forged reports listed, {} rewarded",
                r.sybil_units, r.sybil_honest_coverage_units, r.sybil_forged_listed, r.sybil_forged_counted
            ),
        });
    }
    report.checks = checks;
}

/// The digest of a report as a hash.
pub fn digest_of(report: &Report) -> Option<Hash32> {
    let bytes = hex::decode(&report.determinism_digest).ok()?;
    let arr: [u8; 32] = bytes.try_into().ok()?;
    Some(Hash32(arr))
}
