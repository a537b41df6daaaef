//! Consensus on epoch summaries, run in the deterministic harness.
//!
//! CI runs three fixed seeds per scenario, and 31 members with ten Byzantine
//! for one seed (about 30 s unoptimised in all, most of it signature checks).
//! The long sweep runs every scenario over `MESHD_SEEDS` seeds
//! (100..100 + MESHD_SEEDS), 31 members (honest and with each Byzantine
//! behaviour) every tenth seed; 100 seeds take about 4 minutes optimised on
//! one core, 1,000 about 40:
//!
//! ```text
//! MESHD_SEEDS=1000 cargo test --release -p meshd-node --test consensus -- --ignored --nocapture
//! ```

use meshd_node::sim::{Byzantine, Crash, Outcome, Partition, RegistryChange, Setup, Sim};

/// Seeds CI runs for each scenario.
const CI_SEEDS: [u64; 3] = [1, 2, 3];

fn run(setup: Setup) -> Outcome {
    let seed = setup.seed;
    let label = format!(
        "{} members, byzantine {:?}, crashes {:?}, partitions {:?}, persist-crash {:?}, loss {}‰",
        setup.members,
        setup.byzantine,
        setup.crashes,
        setup.partitions,
        setup.crash_after_vote_persist,
        setup.loss_per_mille
    );
    let outcome = Sim::new(setup).run();
    if let Err(violation) = outcome.check_safety() {
        panic!("seed {seed} ({label}): {violation}");
    }
    let mut outcome = outcome;
    outcome.label = label;
    outcome
}

fn honest_nodes(outcome: &Outcome, n: usize) -> Vec<usize> {
    (0..n).filter(|i| !outcome.byzantine.contains(i)).collect()
}

fn assert_all_finalized(outcome: &Outcome, nodes: &[usize], seed: u64) {
    for &i in nodes {
        for e in 0..outcome.epochs {
            assert!(
                outcome.finalized[i].contains_key(&e),
                "seed {seed} ({}): node {i} did not finalize epoch {e}; status {:?}",
                outcome.label,
                outcome.status.get(i)
            );
        }
    }
}

fn all_honest(n: usize, seed: u64) {
    let outcome = run(Setup::honest(n, seed));
    assert_all_finalized(&outcome, &(0..n).collect::<Vec<_>>(), seed);
    // Members that judged the decided proposals kept what they settled
    // (check_safety checked that each rebuilds its summary's roots).
    assert!(outcome.settled > 0, "seed {seed}: no settlement persisted");
}

#[test]
fn four_honest_members_finalize_identical_summaries() {
    for seed in CI_SEEDS {
        all_honest(4, seed);
    }
}

#[test]
fn seven_honest_members_finalize_identical_summaries() {
    for seed in CI_SEEDS {
        all_honest(7, seed);
    }
}

#[test]
fn thirty_one_honest_members_finalize_identical_summaries() {
    // One epoch keeps this under a few seconds unoptimised; the sweep and
    // the finality example run 31 members over three.
    let mut setup = Setup::honest(31, 1);
    setup.epochs = 1;
    let outcome = run(setup);
    assert_all_finalized(&outcome, &(0..31).collect::<Vec<_>>(), 1);
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let a = Sim::new(Setup::honest(4, 9)).run();
    let b = Sim::new(Setup::honest(4, 9)).run();
    assert_eq!(a.digest, b.digest);
    assert_eq!(a.finalized, b.finalized);
}

fn f_crashed(n: usize, seed: u64) {
    let f = (n - 1) / 3;
    let mut setup = Setup::honest(n, seed);
    setup.crashes = (0..f).map(|i| Crash { node: n - 1 - i, at_ms: 0, restart_ms: None }).collect();
    let outcome = run(setup);
    assert_all_finalized(&outcome, &(0..n - f).collect::<Vec<_>>(), seed);
}

#[test]
fn with_f_members_crashed_the_rest_keep_finalizing() {
    for seed in CI_SEEDS {
        f_crashed(4, seed);
        f_crashed(7, seed);
    }
}

fn leader_crash(n: usize, seed: u64) {
    // Epoch 0 decides at the grace period's end (70 s); its round-0
    // proposer is member 0. It crashes right then, mid-round, and comes back.
    let mut setup = Setup::honest(n, seed);
    setup.crashes = vec![Crash { node: 0, at_ms: 70_010, restart_ms: Some(100_000) }];
    let outcome = run(setup);
    assert_all_finalized(&outcome, &(1..n).collect::<Vec<_>>(), seed);
}

#[test]
fn a_leader_crashing_mid_round_is_replaced_by_the_next_round() {
    for seed in CI_SEEDS {
        leader_crash(4, seed);
        leader_crash(7, seed);
    }
}

fn byzantine(n: usize, seed: u64, behaviour: Byzantine) {
    byzantine_for(n, seed, behaviour, 3);
}

fn byzantine_for(n: usize, seed: u64, behaviour: Byzantine, epochs: u64) {
    let f = (n - 1) / 3;
    let mut setup = Setup::honest(n, seed);
    setup.epochs = epochs;
    // Members 0..f propose first in epochs 0..f: the worst place for them.
    setup.byzantine = (0..f).map(|i| (i, behaviour)).collect();
    let outcome = run(setup);
    let honest = honest_nodes(&outcome, n);
    assert_all_finalized(&outcome, &honest, seed);
}

#[test]
fn an_equivocating_proposer_never_splits_the_decision() {
    for seed in CI_SEEDS {
        byzantine(4, seed, Byzantine::EquivocatingProposer);
        byzantine(7, seed, Byzantine::EquivocatingProposer);
    }
}

#[test]
fn double_voters_never_split_the_decision() {
    for seed in CI_SEEDS {
        byzantine(4, seed, Byzantine::DoubleVoter);
        byzantine(7, seed, Byzantine::DoubleVoter);
    }
}

#[test]
fn proposals_counting_forged_or_invalid_reports_are_never_finalized() {
    for seed in CI_SEEDS {
        byzantine(4, seed, Byzantine::ForgingProposer);
        byzantine(7, seed, Byzantine::ForgingProposer);
    }
}

#[test]
fn thirty_one_members_with_ten_byzantine_never_split_and_keep_finalizing() {
    // f = 10 of 31 misbehave in each of the three ways, the Byzantine ones
    // proposing the first rounds. One epoch keeps this to seconds
    // unoptimised; the sweep runs three epochs every tenth seed.
    for behaviour in [Byzantine::EquivocatingProposer, Byzantine::DoubleVoter, Byzantine::ForgingProposer] {
        byzantine_for(31, 1, behaviour, 1);
    }
}

fn partition(n: usize, seed: u64) {
    let f = (n - 1) / 3;
    let mut setup = Setup::honest(n, seed);
    setup.epochs = 4;
    // The last f members are cut off for epochs 0–2's decisions, then heal.
    setup.partitions = vec![Partition { minority: (n - f..n).collect(), from_ms: 0, until_ms: 200_000 }];
    let outcome = run(setup);
    assert_all_finalized(&outcome, &(0..n).collect::<Vec<_>>(), seed);
}

#[test]
fn a_partitioned_minority_catches_up_with_the_same_summaries_after_healing() {
    for seed in CI_SEEDS {
        partition(4, seed);
        partition(7, seed);
    }
}

fn restart_between_persist_and_send(n: usize, seed: u64, k: u64) {
    let mut setup = Setup::honest(n, seed);
    setup.crash_after_vote_persist = vec![(1, k), (2, k + 1)];
    let outcome = run(setup);
    assert_all_finalized(&outcome, &(0..n).collect::<Vec<_>>(), seed);
}

#[test]
fn a_restart_between_persisting_and_sending_a_vote_never_signs_a_conflicting_vote() {
    for seed in CI_SEEDS {
        for k in 1..=4 {
            restart_between_persist_and_send(4, seed, k);
        }
    }
}

fn lossy(n: usize, seed: u64) {
    let mut setup = Setup::honest(n, seed);
    setup.loss_per_mille = 50;
    let outcome = run(setup);
    assert_all_finalized(&outcome, &(0..n).collect::<Vec<_>>(), seed);
}

#[test]
fn with_five_percent_message_loss_every_member_still_finalizes() {
    for seed in CI_SEEDS {
        lossy(4, seed);
        lossy(7, seed);
    }
}

/// Five nodes; the registry changes from `before` to `after` at `at_ms`
/// on chain, odd nodes reading it `odd_late_ms` later. The epochs before
/// `effective` keep the old committee, the later ones have the new one, and
/// every node (member or not) finalizes the same summaries.
fn registry_change(
    seed: u64,
    before: &[usize],
    after: &[usize],
    at_ms: u64,
    odd_late_ms: u64,
    effective: u64,
) {
    let mut setup = Setup::honest(5, seed);
    setup.epochs = 4;
    setup.unregistered = (0..5).filter(|i| !before.contains(i)).collect();
    setup.registry_changes = vec![RegistryChange { at_ms, members: after.to_vec(), odd_late_ms }];
    let outcome = run(setup);
    assert_all_finalized(&outcome, &(0..5).collect::<Vec<_>>(), seed);
    let hashes: Vec<_> = (0..4).map(|e| outcome.summaries[0][&e].committee_hash).collect();
    for e in 1..4 {
        if e == effective {
            assert_ne!(
                hashes[e as usize - 1],
                hashes[e as usize],
                "seed {seed}: epoch {e} has the new committee"
            );
        } else {
            assert_eq!(
                hashes[e as usize - 1],
                hashes[e as usize],
                "seed {seed}: epoch {e} keeps its committee"
            );
        }
    }
}

#[test]
fn a_member_added_mid_epoch_joins_the_committee_at_the_next_epoch() {
    for seed in CI_SEEDS {
        registry_change(seed, &[0, 1, 2, 3], &[0, 1, 2, 3, 4], 90_000, 0, 2);
    }
}

#[test]
fn a_member_removed_while_an_epoch_is_decided_leaves_after_the_next_epoch() {
    // Epoch 0 is being decided at 70.5 s (its grace ended at 70 s) and
    // epoch 1 is open: both keep all five members.
    for seed in CI_SEEDS {
        registry_change(seed, &[0, 1, 2, 3, 4], &[0, 1, 2, 3], 70_500, 0, 2);
    }
}

#[test]
fn members_reading_a_registry_change_across_an_epoch_boundary_still_agree() {
    // On chain at 55 s (epoch 0): it applies from epoch 1. Odd nodes read it
    // at 68 s, in epoch 1, before epoch 1 is decided: they apply it to
    // epoch 1 too. Node 3 is removed while it still thinks it is a member.
    for seed in CI_SEEDS {
        registry_change(seed, &[0, 1, 2, 3, 4], &[0, 1, 2, 4], 55_000, 13_000, 1);
    }
}

/// Every node has a meter reading every 15 s; each epoch's finalized
/// energy is exactly what the gateways attested (faulty intervals earn nothing).
fn metered(n: usize, seed: u64) {
    let mut setup = Setup::honest(n, seed);
    setup.meter_every_ms = 15_000;
    let outcome = run(setup);
    assert_all_finalized(&outcome, &(0..n).collect::<Vec<_>>(), seed);
    for e in 0..outcome.epochs {
        let summary = &outcome.summaries[0][&e];
        let (count, wh) = outcome.attested.get(&e).copied().unwrap_or_default();
        assert!(count > 0, "seed {seed}: epoch {e} has attested readings");
        assert_eq!((summary.attestation_count, summary.energy_wh), (count, wh), "seed {seed}: epoch {e}");
    }
}

#[test]
fn attested_meter_energy_is_finalized_exactly() {
    for seed in CI_SEEDS {
        metered(4, seed);
    }
}

fn seeds() -> u64 {
    std::env::var("MESHD_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1000)
}

#[test]
#[ignore = "long sweep: MESHD_SEEDS=1000 cargo test --release -p meshd-node --test consensus -- --ignored"]
fn sweep_every_scenario_over_many_seeds() {
    for seed in 100..100 + seeds() {
        if seed % 50 == 0 {
            eprintln!("sweep: seed {seed}");
        }
        all_honest(4, seed);
        all_honest(7, seed);
        if seed % 10 == 0 {
            all_honest(31, seed);
            byzantine(31, seed, Byzantine::EquivocatingProposer);
            byzantine(31, seed, Byzantine::DoubleVoter);
            byzantine(31, seed, Byzantine::ForgingProposer);
        }
        f_crashed(7, seed);
        leader_crash(4, seed);
        byzantine(7, seed, Byzantine::EquivocatingProposer);
        byzantine(7, seed, Byzantine::DoubleVoter);
        byzantine(7, seed, Byzantine::ForgingProposer);
        partition(7, seed);
        restart_between_persist_and_send(4, seed, 1 + seed % 4);
        lossy(7, seed);
        metered(7, seed);
        registry_change(seed, &[0, 1, 2, 3], &[0, 1, 2, 3, 4], 60_000 + seed % 60_000, 0, 2);
        registry_change(seed, &[0, 1, 2, 3, 4], &[1, 2, 3, 4], 60_000 + seed % 60_000, seed % 9_000, 2);
    }
}
