//! The adversarial scenario, shrunk to CI size: consensus never forks with
//! equivocating members and silent leaders, and forged witness reports
//! (claiming a strong signal) earn nothing; and, without spam, Sybil rings'
//! forged reports reach consensus but earn nothing.

use meshd_simulations::engine::Progress;
use meshd_simulations::scenario::Scenario;
use meshd_simulations::simulate;

#[test]
fn adversaries_cause_no_fork_and_forgers_earn_nothing() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/adversarial.toml"))
        .expect("read");
    let mut s = Scenario::parse(&text).expect("adversarial parses");
    s.placement.gateways = 48;
    s.placement.cities = 2;
    s.epochs = 3;
    let a = &mut s.adversaries;
    a.forged_witnesses = 3;
    a.location_liars = 2;
    a.sybil_rings = 1;
    a.equivocators = 2;
    a.silent_leaders = 2;
    a.spammers = 1;
    a.spam_per_epoch = 60;
    s.validate().expect("valid");
    let report = simulate(&s, 2, &Progress::default()).expect("run");
    let check = |name: &str| {
        report
            .checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("seed {}: no check {name}", s.seed))
    };
    for name in ["no_fork", "forged_witnesses_earn_nothing", "anchors_match_decided_summaries"] {
        let c = check(name);
        assert!(c.passed, "seed {}: {name}: {}", s.seed, c.detail);
    }
    assert!(report.rewards.forged_published > 0, "seed {}: the forgers forged nothing", s.seed);
    assert!(report.finality.iter().any(|e| e.regions_finalized > 0), "seed {}: nothing finalized", s.seed);
    let honest = &report.rewards.by_role["honest"];
    assert!(honest.units > 0, "seed {}: honest gateways earned nothing", s.seed);
}

/// The Sybil scenario: two rings of four, no spam, so their forged witness
/// reports of each other's beacons reach the decided summaries. The
/// cross-witness rule must leave every one of them unrewarded, so the rings
/// earn exactly their real coverage, and no real reception may lose its reward.
#[test]
fn sybil_rings_forged_witnesses_reach_consensus_but_earn_nothing() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/sybil.toml")).expect("read");
    let mut s = Scenario::parse(&text).expect("sybil parses");
    // Two epochs keep it short; the first forged reports are decided in epoch 0.
    s.epochs = 2;
    s.validate().expect("valid");
    let report = simulate(&s, 2, &Progress::default()).expect("run");
    let r = &report.rewards;
    assert!(r.sybil_forged_listed > 0, "seed {}: no forged report reached a summary: {r:?}", s.seed);
    assert_eq!(r.sybil_forged_counted, 0, "seed {}: forged reports rewarded: {r:?}", s.seed);
    assert_eq!(r.excluded_real, 0, "seed {}: real receptions lost their reward: {r:?}", s.seed);
    for c in &report.checks {
        assert!(c.passed, "seed {}: check {} failed: {}", s.seed, c.name, c.detail);
    }
    assert!(
        report.checks.iter().any(|c| c.name == "sybil_ring_earns_no_more_than_its_coverage"),
        "seed {}: the Sybil check did not run",
        s.seed
    );
}
