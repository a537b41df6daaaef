//! Measures finality in the deterministic harness: time from an epoch's
//! decision moment to each member's `Finalized`, in ms and in message delays
//! (mean one-way latency), and what each member sends per epoch.
//!
//! ```text
//! cargo run --release -p meshd-node --example finality -- 4 31
//! ```
//!
//! Arguments: committee sizes (default 4 and 31); `MESHD_SEEDS` seeds each (default 5).
//! "Published" counts one per broadcast (reports, proposals, votes); "sent"
//! bytes are those broadcasts once each plus fetch answers; "received" bytes
//! count every copy delivered (full mesh, no gossip amplification).

use meshd_node::sim::{Setup, Sim};

fn main() {
    let sizes: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() { vec![4, 31] } else { sizes };
    let seeds: u64 = std::env::var("MESHD_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    println!(
        "members  p50 ms  p95 ms  p50 delays  published/member/epoch  consensus msgs/member/epoch  bytes sent/member/epoch  bytes received/member/epoch"
    );
    for n in sizes {
        let mut latencies = Vec::new();
        let (mut published, mut consensus, mut bytes, mut received, mut samples) =
            (0u64, 0u64, 0u64, 0u64, 0u64);
        let mut mean_latency = 0.0;
        for seed in 1..=seeds {
            let setup = Setup::honest(n, seed);
            mean_latency = (setup.latency_ms.0 + setup.latency_ms.1) as f64 / 2.0;
            let epochs = setup.epochs;
            let outcome = Sim::new(setup).run();
            if let Err(violation) = outcome.check_safety() {
                panic!("seed {seed}: {violation}");
            }
            for node in &outcome.finalized {
                latencies.extend(node.values().map(|(_, ms)| *ms));
            }
            published += outcome.published.iter().sum::<u64>();
            bytes += outcome.bytes.iter().sum::<u64>();
            received += outcome.received.iter().sum::<u64>();
            consensus += outcome.metrics.iter().map(|m| m.votes_sent + m.proposals_sent).sum::<u64>();
            samples += n as u64 * epochs;
        }
        latencies.sort_unstable();
        let pct = |p: usize| latencies.get(latencies.len().saturating_sub(1) * p / 100).copied().unwrap_or(0);
        println!(
            "{n:>7}  {:>6}  {:>6}  {:>10.1}  {:>22.1}  {:>27.1}  {:>23.0}  {:>27.0}",
            pct(50),
            pct(95),
            pct(50) as f64 / mean_latency,
            published as f64 / samples as f64,
            consensus as f64 / samples as f64,
            bytes as f64 / samples as f64,
            received as f64 / samples as f64,
        );
    }
}
