//! Anchoring against a real anvil: the contract's digest, accepted anchors,
//! idempotency, the contract's refusals as typed errors, a node restart
//! during a submission, a reorganised-away anchor, and registry reads.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use alloy::eips::BlockId;
use alloy::primitives::B256;
use alloy::providers::Provider;
use common::*;
use meshd_chain::bindings::anchor::EpochAnchor;
use meshd_chain::{AnchorOutcome, AnchorRejection, EpochRange, RegistryReader, RetryPolicy, SubmitError};
use meshd_protocol::keys::EvmAddress;
use meshd_protocol::{GatewayId, keccak256};

#[tokio::test]
async fn rust_anchor_and_committee_digests_equal_the_contract_views() {
    let anvil = Anvil::start().await;
    let (deployment, keys) = deploy_with_committee(&anvil, 4).await;
    let contract = EpochAnchor::new(deployment.anchor, anvil.provider());
    for (range, root) in [
        (EpochRange { from: 0, to: 3 }, keccak256("meshd test root")),
        (EpochRange { from: 17, to: 17 }, keccak256("another")),
        (EpochRange { from: u64::MAX - 2, to: u64::MAX - 1 }, keccak256("last")),
    ] {
        let on_chain = contract.anchorDigest(range.from, range.to, B256::from(root.0)).call().await.unwrap();
        assert_eq!(domain(&deployment).anchor_digest(range, &root).0, on_chain.0, "{range}");
    }
    let mut members: Vec<EvmAddress> = keys.iter().map(|k| k.address()).collect();
    members.sort();
    let addresses: Vec<alloy::primitives::Address> =
        members.iter().map(|m| alloy::primitives::Address::from(m.0)).collect();
    let on_chain = contract.committeeDigest(2, 10, addresses).call().await.unwrap();
    assert_eq!(domain(&deployment).committee_digest(2, 10, &members).0, on_chain.0);
}

#[tokio::test]
async fn quorum_signed_anchor_is_accepted_and_resubmission_is_idempotent() {
    let anvil = Anvil::start().await;
    let (deployment, keys) = deploy_with_committee(&anvil, 4).await;
    let anchorer = anchorer(&anvil, &deployment, 1);
    let range = EpochRange { from: 0, to: 3 };
    let root = keccak256("epochs 0..=3");
    let signatures = sign(&deployment, range, &root, &keys[..3]);

    let outcome = anchorer.submit(range, root, &signatures).await.unwrap();
    let AnchorOutcome::Anchored { block, submissions, gas_used, .. } = outcome else {
        panic!("expected our transaction to anchor, got {outcome:?}");
    };
    assert_eq!(submissions, 1);
    assert!(gas_used > 0);
    assert_eq!(root_of(&anvil.url, deployment.anchor, range).await.0, root.0);

    let again = anchorer.submit(range, root, &signatures).await.unwrap();
    assert_eq!(again, AnchorOutcome::AlreadyAnchored { block });

    let other = keccak256("another root");
    let conflict = anchorer.submit(range, other, &sign(&deployment, range, &other, &keys[..3])).await;
    assert!(
        matches!(conflict, Err(SubmitError::ConflictingRoot { anchored, ours, .. }) if anchored == root && ours == other),
        "{conflict:?}"
    );
}

#[tokio::test]
async fn short_quorum_is_rejected_as_quorum_not_reached() {
    let anvil = Anvil::start().await;
    let (deployment, keys) = deploy_with_committee(&anvil, 4).await;
    let range = EpochRange { from: 0, to: 0 };
    let root = keccak256("short");
    let result = anchorer(&anvil, &deployment, 1)
        .submit(range, root, &sign(&deployment, range, &root, &keys[..2]))
        .await;
    match result {
        Err(SubmitError::Rejected {
            rejection: AnchorRejection::QuorumNotReached { signatures: 2, quorum: 3 },
            ..
        }) => {}
        other => panic!("expected QuorumNotReached(2, 3), got {other:?}"),
    }
}

#[tokio::test]
async fn duplicate_signer_is_rejected_as_signers_not_ascending() {
    let anvil = Anvil::start().await;
    let (deployment, keys) = deploy_with_committee(&anvil, 4).await;
    let range = EpochRange { from: 0, to: 0 };
    let root = keccak256("duplicate");
    let mut signatures = sign(&deployment, range, &root, &keys[..3]);
    signatures.insert(1, signatures[1]);
    let duplicated = signatures[1].signer;
    let result = anchorer(&anvil, &deployment, 1).submit(range, root, &signatures).await;
    match result {
        Err(SubmitError::Rejected {
            rejection: AnchorRejection::SignersNotAscending { index: 2, signer },
            ..
        }) => {
            assert_eq!(signer, duplicated);
        }
        other => panic!("expected SignersNotAscending at index 2, got {other:?}"),
    }
}

#[tokio::test]
async fn outsider_signature_is_rejected_as_not_committee_member() {
    let anvil = Anvil::start().await;
    let (deployment, keys) = deploy_with_committee(&anvil, 4).await;
    let outsider = committee_keys(5).pop().unwrap();
    let range = EpochRange { from: 0, to: 0 };
    let root = keccak256("outsider");
    let signers = [keys[0].clone(), keys[1].clone(), outsider.clone()];
    let result = anchorer(&anvil, &deployment, 1)
        .submit(range, root, &sign(&deployment, range, &root, &signers))
        .await;
    match result {
        Err(SubmitError::Rejected {
            rejection: AnchorRejection::NotCommitteeMember { signer, version: 1 },
            ..
        }) => {
            assert_eq!(signer, outsider.address());
        }
        other => panic!("expected NotCommitteeMember, got {other:?}"),
    }
}

#[tokio::test]
async fn replay_and_overlap_are_rejected_by_the_contract() {
    let anvil = Anvil::start().await;
    let (deployment, keys) = deploy_with_committee(&anvil, 4).await;
    let anchorer = anchorer(&anvil, &deployment, 1);
    let range = EpochRange { from: 0, to: 3 };
    let root = keccak256("epochs 0..=3");
    let signatures = sign(&deployment, range, &root, &keys[..3]);
    anchorer.submit(range, root, &signatures).await.unwrap();

    // The raw send skips the idempotency check, so the contract itself answers.
    let replay = anchorer.send_once(range, root, &signatures).await;
    assert!(
        matches!(replay, Err(SubmitError::Rejected { rejection: AnchorRejection::AlreadyAnchored { range: r }, .. }) if r == range),
        "{replay:?}"
    );
    let overlapping = EpochRange { from: 2, to: 5 };
    let overlap_root = keccak256("epochs 2..=5");
    let overlap_signatures = sign(&deployment, overlapping, &overlap_root, &keys[..3]);
    let raw = anchorer.send_once(overlapping, overlap_root, &overlap_signatures).await;
    assert!(
        matches!(
            raw,
            Err(SubmitError::Rejected {
                rejection: AnchorRejection::RangeOverlaps { from: 2, next_epoch: 4 },
                ..
            })
        ),
        "{raw:?}"
    );
    // The submitter refuses it as well, before sending anything.
    let submitted = anchorer.submit(overlapping, overlap_root, &overlap_signatures).await;
    assert!(
        matches!(
            submitted,
            Err(SubmitError::Rejected {
                rejection: AnchorRejection::RangeOverlaps { from: 2, next_epoch: 4 },
                ..
            })
        ),
        "{submitted:?}"
    );
}

#[tokio::test]
async fn anchor_reorganised_away_is_submitted_again() {
    let anvil = Anvil::start().await;
    let (deployment, keys) = deploy_with_committee(&anvil, 4).await;
    let range = EpochRange { from: 0, to: 3 };
    let root = keccak256("reorged");
    let signatures = sign(&deployment, range, &root, &keys[..3]);
    let provider = anvil.provider();
    let snapshot: serde_json::Value = provider.raw_request("evm_snapshot".into(), ()).await.unwrap();

    let submitter = anchorer(&anvil, &deployment, 3);
    let task = tokio::spawn(async move { submitter.submit(range, root, &signatures).await });

    // Wait for the first transaction to land, then drop its block.
    while root_of(&anvil.url, deployment.anchor, range).await == B256::ZERO {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reverted: bool = provider.raw_request("evm_revert".into(), (snapshot,)).await.unwrap();
    assert!(reverted);
    assert_eq!(root_of(&anvil.url, deployment.anchor, range).await, B256::ZERO);

    // Keep producing blocks until the submitter reports.
    while !task.is_finished() {
        anvil.mine().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let outcome = task.await.unwrap().unwrap();
    let AnchorOutcome::Anchored { submissions, .. } = outcome else {
        panic!("expected a fresh anchoring transaction, got {outcome:?}");
    };
    assert_eq!(submissions, 2, "the reorganised-away transaction is replaced by a second one");
    assert_eq!(root_of(&anvil.url, deployment.anchor, range).await.0, root.0);
}

#[tokio::test]
async fn anvil_down_when_submission_starts_is_retried_until_it_returns() {
    let mut anvil = Anvil::start().await;
    let (deployment, keys) = deploy_with_committee(&anvil, 4).await;
    let range = EpochRange { from: 0, to: 3 };
    let root = keccak256("restart");
    let signatures = sign(&deployment, range, &root, &keys[..3]);

    let (dir, state_file) = dump_state(&anvil).await;

    // The node goes away; the submission starts while it is down.
    anvil.kill();
    let submitter = anchorer(&anvil, &deployment, 1);
    let task = tokio::spawn(async move { submitter.submit(range, root, &signatures).await });
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!task.is_finished(), "the submitter keeps retrying while the node is down");

    let restarted = Anvil::start_on(anvil.port, &["--load-state", state_file.to_str().unwrap()]).await;
    let outcome = tokio::time::timeout(Duration::from_secs(60), task).await.unwrap().unwrap().unwrap();
    assert!(matches!(outcome, AnchorOutcome::Anchored { .. }), "{outcome:?}");
    assert_eq!(root_of(&restarted.url, deployment.anchor, range).await.0, root.0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Dumps anvil's state into a file `--load-state` reads (anvil returns it as
/// hex of gzip'd JSON).
async fn dump_state(anvil: &Anvil) -> (std::path::PathBuf, std::path::PathBuf) {
    let state: String = anvil.provider().raw_request("anvil_dumpState".into(), ()).await.unwrap();
    let dir = std::env::temp_dir().join(format!("meshd-chain-anvil-{}", anvil.port));
    std::fs::create_dir_all(&dir).unwrap();
    let gz = dir.join("state.json.gz");
    std::fs::write(&gz, hex::decode(state.trim_start_matches("0x")).unwrap()).unwrap();
    let json = std::process::Command::new("gzip").arg("-dc").arg(&gz).output().expect("gzip is installed");
    assert!(json.status.success(), "gzip -dc failed");
    let state_file = dir.join("state.json");
    std::fs::write(&state_file, json.stdout).unwrap();
    (dir, state_file)
}

#[tokio::test]
async fn anvil_restart_while_confirming_is_ridden_out() {
    let mut anvil = Anvil::start().await;
    let (deployment, keys) = deploy_with_committee(&anvil, 4).await;
    let range = EpochRange { from: 0, to: 3 };
    let root = keccak256("restart while confirming");
    let signatures = sign(&deployment, range, &root, &keys[..3]);

    let submitter = anchorer(&anvil, &deployment, 3);
    let task = tokio::spawn(async move { submitter.submit(range, root, &signatures).await });
    while root_of(&anvil.url, deployment.anchor, range).await == B256::ZERO {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The transaction is in, 2 confirmations are missing: the node restarts.
    let (dir, state_file) = dump_state(&anvil).await;
    anvil.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restarted = Anvil::start_on(anvil.port, &["--load-state", state_file.to_str().unwrap()]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !task.is_finished() {
        assert!(tokio::time::Instant::now() < deadline, "the submitter did not finish after the restart");
        restarted.mine().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let outcome = task.await.unwrap().unwrap();
    println!("after the restart: {outcome:?}");
    assert!(matches!(outcome, AnchorOutcome::Anchored { submissions: 1, .. }), "{outcome:?}");
    assert_eq!(root_of(&restarted.url, deployment.anchor, range).await.0, root.0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn node_that_stays_down_is_reported_as_an_rpc_failure() {
    let mut anvil = Anvil::start().await;
    let (deployment, keys) = deploy_with_committee(&anvil, 4).await;
    let range = EpochRange { from: 0, to: 0 };
    let root = keccak256("down");
    let signatures = sign(&deployment, range, &root, &keys[..3]);
    anvil.kill();
    let mut config = test_config(1);
    config.retry = RetryPolicy {
        initial_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(20),
        max_attempts: 3,
    };
    let submitter = meshd_chain::Anchorer::new(anvil.url.clone(), deployment.anchor, deployer(), config);
    let result = submitter.submit(range, root, &signatures).await;
    assert!(matches!(result, Err(SubmitError::Rpc { attempts: 3, .. })), "{result:?}");
}

#[tokio::test]
async fn registry_reads_return_the_deployed_committee() {
    let anvil = Anvil::start().await;
    let (deployment, keys) = deploy_with_committee(&anvil, 4).await;
    let reader = RegistryReader::new(anvil.url.clone(), deployment.registry, RetryPolicy::default());
    let (view, head) = reader.snapshot(deployment.deployed_at).await.unwrap();
    assert!(head >= deployment.deployed_at);
    assert_eq!(view.gateways.len(), 4);
    for (member, key) in members(&keys).iter().zip(&keys) {
        let id = GatewayId(member.gateway_id);
        assert_eq!(view.anchors.get(&key.address()), Some(&id));
        let read = reader.gateway(&id, BlockId::latest()).await.unwrap().unwrap();
        assert_eq!(read, view.gateways[&id]);
        assert_eq!(read.location, member.location);
    }
    assert_eq!(reader.gateway(&GatewayId([0xee; 32]), BlockId::latest()).await.unwrap(), None);
    assert!(view.meters.is_empty());
}
