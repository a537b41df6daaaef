//! The report of a run: a JSON document and a summary table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::stats::{Percentiles, Spread};

/// Everything a run measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// `deterministic` or `real-stack`.
    pub mode: String,
    /// The seed.
    pub seed: u64,
    /// Gateways simulated.
    pub gateways: usize,
    /// Committee regions.
    pub regions: usize,
    /// Epochs asked for.
    pub epochs: u64,
    /// Events processed.
    pub events: u64,
    /// Virtual time simulated, s (the longest region's).
    pub virtual_s: f64,
    /// Wall-clock time of the run, s (filled by the binary; 0 in tests).
    pub wall_s: f64,
    /// Virtual time over wall time.
    pub speedup: f64,
    /// Keccak-256 over every region's event digest, in region order: same seed, same digest.
    pub determinism_digest: String,
    /// Per epoch finality.
    pub finality: Vec<EpochFinality>,
    /// Per region: size and what it finalized.
    pub region_detail: Vec<RegionDetail>,
    /// Gossip delivery and latency.
    pub gossip: Gossip,
    /// Bytes per node per epoch.
    pub bandwidth: Bandwidth,
    /// Process memory.
    pub memory: Memory,
    /// Processor time of the message phase (real-stack mode; zero in
    /// deterministic mode, whose cost is the wall time).
    pub cpu: Cpu,
    /// Rewards by role and the adversaries' gains.
    pub rewards: Rewards,
    /// Anchors and the ground truth.
    pub anchors: Anchors,
    /// Radio.
    pub radio: RadioStats,
    /// Energy meters.
    pub meters: MeterStats,
    /// Crashes and restarts.
    pub faults: FaultStats,
    /// Reports and messages the nodes refused, by reason code.
    pub refused: BTreeMap<String, u64>,
    /// Safety: honest nodes finalizing different summaries of an epoch.
    pub forks: Vec<String>,
    /// Property checks.
    pub checks: Vec<Check>,
}

/// Finality of one epoch across regions.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EpochFinality {
    /// The epoch.
    pub epoch: u64,
    /// Regions whose honest majority finalized it.
    pub regions_finalized: usize,
    /// Regions.
    pub regions: usize,
    /// Time from the epoch's decision moment (end plus grace) to finality, per honest node.
    pub latency: Percentiles,
}

/// One committee region.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RegionDetail {
    /// The H3 cell, hex.
    pub region: String,
    /// Gateways.
    pub gateways: usize,
    /// Of which misbehaving.
    pub adversaries: usize,
    /// Epochs its honest majority finalized.
    pub finalized: usize,
    /// Epochs whose decided summary equals the recomputed ground truth.
    pub ground_truth_matches: u64,
}

/// Gossip delivery.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Gossip {
    /// Copies addressed to a node (every member of the region per publish).
    pub intended: u64,
    /// Copies delivered to a live node.
    pub delivered: u64,
    /// delivered / intended.
    pub delivery_ratio: f64,
    /// Delivery latency, publish to arrival, including uplink queueing.
    pub latency: Percentiles,
}

/// Bytes per node per epoch.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Bandwidth {
    /// Sent (every copy, fetch answers included).
    pub sent_per_epoch: Spread,
    /// Received by region gossip and fetch answers.
    pub received_per_epoch: Spread,
    /// Global-topic bytes every node receives per epoch (all regions' summaries and certificates).
    pub global_topic_per_epoch: f64,
}

/// Memory.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Memory {
    /// Peak resident set of the process, bytes (Linux VmHWM; 0 elsewhere).
    pub peak_rss_bytes: u64,
    /// Peak resident set divided by gateways.
    pub per_node_bytes: u64,
}

/// Processor time the nodes spent while messages flowed: from the first
/// publish to the end of the drain, every thread of the process. It is what
/// bounds how many nodes one machine can run, whatever the latency.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Cpu {
    /// User and system time of the message phase, s.
    pub message_phase_s: f64,
    /// That time per copy delivered, µs: the cost of one node receiving,
    /// checking and forwarding one message, idle upkeep included.
    pub per_delivery_us: f64,
}

/// Rewards.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Rewards {
    /// Units by role.
    pub by_role: BTreeMap<String, RoleRewards>,
    /// Forged witness reports published (forgers and Sybils).
    pub forged_published: u64,
    /// Forgers' witness reports counted in decided summaries (Sybils' intra-ring reports are not included).
    pub forged_counted: u64,
    /// Sybils' forged intra-ring witness reports rewarded in decided
    /// summaries: each passed every witness rule, the cross-witness rule
    /// included, and takes a rewarded slot of the beacon.
    pub sybil_forged_counted: u64,
    /// Sybils' forged intra-ring witness reports listed in decided summaries,
    /// rewarded or not: how many reached consensus.
    pub sybil_forged_listed: u64,
    /// Listed witness reports the cross-witness rule left unrewarded:
    /// forged ones (forgers' and Sybils').
    pub excluded_forged: u64,
    /// Listed witness reports the cross-witness rule left unrewarded: real
    /// receptions (honest gateways' and every adversary's real ones), the
    /// rule's false positives.
    pub excluded_real: u64,
    /// Listed witness reports of real receptions.
    pub listed_real: u64,
    /// Of those, how many claim more than free space (what the cross-witness rule judges).
    pub real_above_free_space: u64,
    /// Of those, how many are within 10 dB of free space, not above it (they corroborate).
    pub real_open_site: u64,
    /// Units earned by the forgers' witness reports.
    pub forged_units: u64,
    /// Sybil rings' units.
    pub sybil_units: u64,
    /// Units the Sybils would have earned from their real radio coverage alone.
    pub sybil_honest_coverage_units: u64,
    /// Decided summaries whose reward root the simulator recomputed identically.
    pub rewards_root_recomputed: u64,
    /// Decided summaries.
    pub decided: u64,
}

/// Rewards of one role.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RoleRewards {
    /// Gateways of the role.
    pub gateways: usize,
    /// Units earned.
    pub units: u64,
    /// Units per gateway.
    pub units_per_gateway: f64,
}

/// Anchors against the ground truth.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Anchors {
    /// Anchor roots signed (one per node per anchored range).
    pub signed: u64,
    /// Roots equal to the root over the decided summaries.
    pub match_decided: u64,
    /// Roots equal to the root over the summaries the simulator recomputed from every report published.
    pub match_ground_truth: u64,
    /// Decided (region, epoch) summaries compared with the recomputed ones.
    pub summaries_compared: u64,
    /// Of which equal.
    pub summaries_match_ground_truth: u64,
}

/// Radio.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RadioStats {
    /// Beacons transmitted.
    pub beacons: u64,
    /// Receptions by gateways of the beaconer's region.
    pub heard: u64,
    /// Receptions by gateways of other regions (not counted by this protocol version).
    pub heard_elsewhere: u64,
    /// Mean gateways in radio range of a gateway.
    pub mean_links: f64,
    /// Noise floor, dBm.
    pub noise_floor_dbm: f64,
}

/// Meters.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MeterStats {
    /// Meters.
    pub count: usize,
    /// Readings produced.
    pub readings: u64,
    /// Outage intervals.
    pub outages: u64,
    /// Ground-truth energy per epoch, Wh.
    pub energy_wh_per_epoch: Vec<u64>,
    /// Readings handed to a live gateway's node.
    pub fed: u64,
    /// Readings the nodes attested.
    pub attested: u64,
    /// Readings the nodes refused, by reason code.
    pub refused: BTreeMap<String, u64>,
    /// Energy in the decided summaries per epoch, Wh, summed over regions.
    pub energy_decided_wh_per_epoch: Vec<u64>,
}

/// Faults.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FaultStats {
    /// Gateways that went down.
    pub crashes: u64,
    /// Restarts from the store.
    pub restarts: u64,
}

/// A property checked on the run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Check {
    /// Name.
    pub name: String,
    /// Whether it held.
    pub passed: bool,
    /// The numbers behind it.
    pub detail: String,
}

impl Report {
    /// Whether every check held.
    pub fn checks_passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    /// A human-readable summary table.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(t, "scenario {} ({}), seed {}", self.scenario, self.mode, self.seed);
        let _ = writeln!(
            t,
            "{} gateways, {} regions, {} epochs, {} events, {:.0} s virtual in {:.1} s ({:.0}x)",
            self.gateways, self.regions, self.epochs, self.events, self.virtual_s, self.wall_s, self.speedup
        );
        let _ =
            writeln!(t, "{:<6} {:>10} {:>10} {:>10} {:>10}", "epoch", "final", "p50 ms", "p90 ms", "p99 ms");
        for e in &self.finality {
            let _ = writeln!(
                t,
                "{:<6} {:>10} {:>10} {:>10} {:>10}",
                e.epoch,
                format!("{}/{}", e.regions_finalized, e.regions),
                e.latency.p50_ms,
                e.latency.p90_ms,
                e.latency.p99_ms
            );
        }
        let g = &self.gossip;
        let _ = writeln!(
            t,
            "gossip: {:.4} delivered ({} of {}), latency p50 {} ms, p90 {} ms, p99 {} ms",
            g.delivery_ratio, g.delivered, g.intended, g.latency.p50_ms, g.latency.p90_ms, g.latency.p99_ms
        );
        let b = &self.bandwidth;
        let _ = writeln!(
            t,
            "bandwidth per node per epoch: sent {:.0} B (p99 {}), received {:.0} B (p99 {}), global topic {:.0} B",
            b.sent_per_epoch.mean,
            b.sent_per_epoch.p99,
            b.received_per_epoch.mean,
            b.received_per_epoch.p99,
            b.global_topic_per_epoch
        );
        let _ = writeln!(
            t,
            "memory: peak {} MiB, {} KiB per node",
            self.memory.peak_rss_bytes >> 20,
            self.memory.per_node_bytes >> 10
        );
        if self.cpu.message_phase_s > 0.0 {
            let _ = writeln!(
                t,
                "cpu: {:.1} s in the message phase, {:.0} us per delivery",
                self.cpu.message_phase_s, self.cpu.per_delivery_us
            );
        }
        let _ = writeln!(t, "{:<16} {:>9} {:>14} {:>14}", "role", "gateways", "units", "per gateway");
        for (role, r) in &self.rewards.by_role {
            let _ =
                writeln!(t, "{:<16} {:>9} {:>14} {:>14.0}", role, r.gateways, r.units, r.units_per_gateway);
        }
        let r = &self.rewards;
        let _ = writeln!(
            t,
            "forged witnesses: {} published, {} counted, {} units; sybil forged listed {}, rewarded {}, units {} vs honest coverage {}",
            r.forged_published,
            r.forged_counted,
            r.forged_units,
            r.sybil_forged_listed,
            r.sybil_forged_counted,
            r.sybil_units,
            r.sybil_honest_coverage_units
        );
        let _ = writeln!(
            t,
            "cross-witness rule: {} forged and {} of {} real witness reports left unrewarded; real ones above free space {}, within 10 dB of it {}",
            r.excluded_forged, r.excluded_real, r.listed_real, r.real_above_free_space, r.real_open_site
        );
        let a = &self.anchors;
        let _ = writeln!(
            t,
            "anchors: {} signed, {} match decided, {} match ground truth; summaries {}/{} match ground truth",
            a.signed,
            a.match_decided,
            a.match_ground_truth,
            a.summaries_match_ground_truth,
            a.summaries_compared
        );
        let _ = writeln!(
            t,
            "radio: {} beacons, {} receptions in region, {} in other regions, {:.1} links per gateway",
            self.radio.beacons, self.radio.heard, self.radio.heard_elsewhere, self.radio.mean_links
        );
        let m = &self.meters;
        if m.count > 0 {
            let _ = writeln!(
                t,
                "meters: {} readings, {} fed, {} attested, {} outages; energy per epoch truth {:?} Wh, decided {:?} Wh",
                m.readings,
                m.fed,
                m.attested,
                m.outages,
                m.energy_wh_per_epoch,
                m.energy_decided_wh_per_epoch
            );
            if !m.refused.is_empty() {
                let _ = writeln!(t, "meter readings refused: {:?}", m.refused);
            }
        }
        let _ = writeln!(
            t,
            "faults: {} down, {} restarts; forks: {}",
            self.faults.crashes,
            self.faults.restarts,
            self.forks.len()
        );
        let _ = writeln!(t, "digest {}", self.determinism_digest);
        for c in &self.checks {
            let _ =
                writeln!(t, "check {:<40} {} ({})", c.name, if c.passed { "ok" } else { "FAILED" }, c.detail);
        }
        t
    }
}

/// Clock ticks per second of the times in `/proc/<pid>/stat`: Linux's
/// `USER_HZ`, fixed at 100 in its user-space ABI on every architecture.
const USER_HZ: f64 = 100.0;

/// User plus system processor time of this process so far, s (Linux
/// `/proc/self/stat`; 0 elsewhere), 10 ms resolution.
pub fn process_cpu_s() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // The command name, field 2, is in parentheses and may hold spaces: count
    // fields after its closing one. utime and stime are fields 14 and 15.
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / USER_HZ
}

/// Peak resident set of this process, bytes (Linux `VmHWM`; 0 elsewhere).
pub fn peak_rss_bytes() -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return 0 };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}
