//! Gas of anchoring with committees of 4, 31 and 64 members, each with its
//! quorum of signatures, on a real anvil. Prints a table (run with
//! `cargo test -p meshd-chain --test gas -- --nocapture`); the numbers are
//! compared with docs/chain.md §9 only loosely, because timing and gas
//! belong in reports, not in exact assertions.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use meshd_chain::{AnchorOutcome, EpochRange, quorum};
use meshd_protocol::keccak256;

#[tokio::test]
async fn anchoring_gas_grows_with_the_quorum_of_committees_of_4_31_and_64() {
    let mut rows = Vec::new();
    for n in [4usize, 31, 64] {
        let anvil = Anvil::start().await;
        let (deployment, keys) = deploy_with_committee(&anvil, n).await;
        let range = EpochRange { from: 0, to: 3 };
        let root = keccak256(format!("gas {n}"));
        let q = quorum(n);
        let signatures = sign(&deployment, range, &root, &keys[..q]);
        let outcome = anchorer(&anvil, &deployment, 1).submit(range, root, &signatures).await.unwrap();
        let AnchorOutcome::Anchored { gas_used, .. } = outcome else {
            panic!("expected our transaction to anchor, got {outcome:?}");
        };
        rows.push((n, q, gas_used));
    }
    println!("anchor gas (anvil, cancun; first anchor, activates the committee):");
    println!("{:>9} {:>10} {:>9}", "committee", "signatures", "gas");
    for (n, q, gas) in &rows {
        println!("{n:>9} {q:>10} {gas:>9}");
    }
    // Each extra signature costs about 7.3k gas (docs/chain.md §9): the
    // 64-member anchor needs 40 more signatures than the 4-member one.
    let extra = rows[2].2 - rows[0].2;
    let per_signature = extra / (rows[2].1 - rows[0].1) as u64;
    assert!((6_000..9_000).contains(&per_signature), "{per_signature} gas per signature");
}
