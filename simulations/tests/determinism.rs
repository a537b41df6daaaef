//! Same scenario and seed, same run: the digests of two runs are equal, and
//! a different seed gives a different digest. Also the smoke scenario's
//! properties.

use meshd_simulations::engine::Progress;
use meshd_simulations::scenario::Scenario;
use meshd_simulations::simulate;

fn smoke() -> Scenario {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/smoke.toml")).expect("read");
    Scenario::parse(&text).expect("smoke parses")
}

#[test]
fn the_same_seed_gives_the_same_digest_whatever_the_threads() {
    let s = smoke();
    let a = simulate(&s, 1, &Progress::default()).expect("run");
    let b = simulate(&s, 2, &Progress::default()).expect("run");
    assert_eq!(a.determinism_digest, b.determinism_digest, "seed {}", s.seed);
    assert_eq!(a.events, b.events);
    let mut other = s.clone();
    other.seed += 1;
    let c = simulate(&other, 2, &Progress::default()).expect("run");
    assert_ne!(a.determinism_digest, c.determinism_digest, "seed {}", other.seed);
}

#[test]
fn the_smoke_run_finalizes_without_fork_and_forgers_earn_nothing() {
    let s = smoke();
    let report = simulate(&s, 2, &Progress::default()).expect("run");
    for c in &report.checks {
        assert!(c.passed, "seed {}: check {} failed: {}", s.seed, c.name, c.detail);
    }
    assert!(report.gossip.delivery_ratio > 0.9, "seed {}: {:?}", s.seed, report.gossip);
    assert!(
        report.finality.iter().all(|e| e.regions_finalized > 0),
        "seed {}: {:?}",
        s.seed,
        report.finality
    );
    let json = serde_json::to_value(&report).expect("json");
    for key in ["finality", "gossip", "bandwidth", "memory", "rewards", "anchors", "determinism_digest"] {
        assert!(json.get(key).is_some(), "report lacks {key}");
    }
}

#[test]
fn meter_energy_decided_equals_the_meters_ground_truth() {
    let s = smoke();
    let report = simulate(&s, 2, &Progress::default()).expect("run");
    let m = &report.meters;
    assert!(m.attested > 0, "seed {}: no reading attested: {m:?}", s.seed);
    // Every region with meters finalized every epoch in the smoke scenario.
    assert_eq!(m.energy_decided_wh_per_epoch, m.energy_wh_per_epoch, "seed {}", s.seed);
}
