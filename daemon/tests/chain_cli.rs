//! The chain commands of `meshd` against a real anvil (started by the test,
//! as in chain/tests/common): deploy with a committee, register a gateway,
//! anchor a range signed by the committee through the collector, then
//! `meshd prove` a report and a reward from a sled store, `meshd verify`
//! them against the chain and `meshd chain claim` the reward (once).

#![allow(clippy::unwrap_used)]

#[path = "../../chain/tests/common/mod.rs"]
mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Anvil, DEPLOYER_KEY, deployer, test_config};
use meshd_chain::{Anchorer, Collector, CollectorConfig, EpochRange, Offered, sign_anchor};
use meshd_protocol::envelope::{Domain, Envelope};
use meshd_protocol::geo::Region;
use meshd_protocol::keys::{AnchorKey, KeyFile, Keypair};
use meshd_protocol::merkle::{self, MerkleTree};
use meshd_protocol::message::{Certificate, EpochSummary, Message, Vote, VoteStep};
use meshd_protocol::{GatewayId, Hash32, codec};
use meshd_storage::{FinalizedSummary, Options, Settlement, SledStore, Store, StoreExt};

const REGION: Region = Region(0x8a2a1072b59ffff);
const CELL: &str = "8a2a1072b59ffff";

fn meshd(args: &[&str]) -> (bool, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_meshd"));
    command.args(args).env_remove("RUST_LOG");
    for (name, _) in std::env::vars_os() {
        if name.as_encoded_bytes().starts_with(b"MESHD_") {
            command.env_remove(name);
        }
    }
    let output = command.output().expect("meshd runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn succeeds(args: &[&str]) -> String {
    let (ok, stdout, stderr) = meshd(args);
    assert!(ok, "meshd {args:?} failed\nstdout: {stdout}\nstderr: {stderr}");
    stdout
}

fn fails(args: &[&str]) -> String {
    let (ok, stdout, stderr) = meshd(args);
    assert!(!ok, "meshd {args:?} should fail\nstdout: {stdout}");
    stderr
}

/// Key file `i` with fixed secrets, mode 0600.
fn key_file(dir: &Path, i: u8) -> (PathBuf, KeyFile) {
    let mut anchor = [0u8; 32];
    anchor[31] = 100 + i;
    let keys =
        KeyFile { identity: Keypair::from_secret([i; 32]), anchor: AnchorKey::from_secret(anchor).unwrap() };
    let path = dir.join(format!("gateway-{i}.key"));
    fs::write(&path, keys.to_text().as_bytes()).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    (path, keys)
}

fn line_value<'a>(stdout: &'a str, key: &str) -> &'a str {
    let line =
        stdout.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("no `{key}` in {stdout}"));
    line[key.len()..].trim().trim_start_matches('=').trim().trim_matches('"')
}

/// Five reports per epoch (votes sealed by a gateway: the store takes any
/// envelope), and finalized summaries whose roots are over them; epoch 2
/// also has a reward list.
fn fill_store(path: &Path, rewards: &[(GatewayId, u64)]) -> (Vec<EpochSummary>, Vec<Vec<Hash32>>) {
    let store = SledStore::open(path, Options::default()).unwrap();
    let key = Keypair::from_secret([42; 32]);
    let mut summaries = Vec::new();
    let mut ids = Vec::new();
    for epoch in 0..4u64 {
        let mut epoch_ids = Vec::new();
        for round in 0..5 {
            let vote = Vote {
                region: REGION,
                epoch,
                round,
                step: VoteStep::Prevote,
                value: None,
                commit_signature: None,
            };
            let envelope = Envelope::seal(&Domain::new("test"), &key, &Message::Vote(vote)).unwrap();
            epoch_ids.push(store.put_report(REGION, epoch, &envelope).unwrap());
        }
        let rewards_root = if epoch == 2 {
            MerkleTree::new(rewards.iter().map(|(g, u)| merkle::reward_leaf(g, *u))).root()
        } else {
            Hash32::ZERO
        };
        let summary = EpochSummary {
            region: REGION,
            epoch,
            previous: Hash32::ZERO,
            reports_root: MerkleTree::new(epoch_ids.iter().map(merkle::report_leaf)).root(),
            rewards_root,
            energy_root: Hash32::ZERO,
            beacon_count: 1,
            witness_count: 4,
            attestation_count: 0,
            reward_units: rewards.iter().map(|(_, u)| u).sum(),
            energy_wh: 0,
            committee_hash: Hash32::ZERO,
        };
        let certificate = Certificate {
            region: REGION,
            epoch,
            round: 0,
            summary: codec::summary_hash(&summary).unwrap(),
            signatures: Vec::new(),
        };
        let mut batch = meshd_storage::Batch::new();
        batch.put_summary(&FinalizedSummary { summary: summary.clone(), certificate }).unwrap();
        // What the epochs settled, as a committee member keeps it; epoch 3's
        // is missing, as at a gateway that only followed that decision.
        if epoch < 3 {
            let rewards = if epoch == 2 { rewards.to_vec() } else { Vec::new() };
            let settlement = Settlement {
                region: REGION,
                epoch,
                report_ids: epoch_ids.clone(),
                rewards,
                energy: Vec::new(),
            };
            settlement.check_against(&summary).unwrap();
            batch.put_settlement(&settlement).unwrap();
        }
        store.apply(&batch).unwrap();
        summaries.push(summary);
        ids.push(epoch_ids);
    }
    (summaries, ids)
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_register_anchor_prove_verify_and_claim_through_the_cli() {
    let anvil = Anvil::start().await;
    let url = anvil.url.to_string();
    let dir = tempfile::tempdir().unwrap();
    let members: Vec<(PathBuf, KeyFile)> = (1..=4).map(|i| key_file(dir.path(), i)).collect();

    // Deploy with the four members as the first committee.
    let mut deploy = vec!["chain", "deploy", "--rpc-url", &url, "--private-key", DEPLOYER_KEY];
    for (path, _) in &members {
        deploy.extend(["--member", path.to_str().unwrap()]);
    }
    let stdout = succeeds(&deploy);
    assert!(stdout.contains("[chain]"), "{stdout}");
    let anchor = line_value(&stdout, "anchor_contract").to_owned();
    let registry = line_value(&stdout, "registry_contract").to_owned();
    let distributor = line_value(&stdout, "distributor:").to_owned();
    assert_eq!(line_value(&stdout, "chain_id"), "31337");

    // Register a fifth gateway from its key file; twice is refused with the contract's reason.
    let (fifth, _) = key_file(dir.path(), 5);
    let register = [
        "chain",
        "register",
        "--rpc-url",
        &url,
        "--private-key",
        DEPLOYER_KEY,
        "--registry",
        &registry,
        "--gateway",
        fifth.to_str().unwrap(),
        "--location",
        CELL,
    ];
    let out = succeeds(&register);
    assert!(out.starts_with("registered 12D3KooW"), "{out}");
    assert!(fails(&register).contains("GatewayExists"));

    // The store of a gateway: epochs 0..=3 finalized, rewards for the members in epoch 2.
    let rewards: Vec<(GatewayId, u64)> =
        members.iter().enumerate().map(|(i, (_, k))| (k.identity.gateway_id(), 10 + i as u64)).collect();
    let store_dir = dir.path().join("store");
    let (summaries, ids) = fill_store(&store_dir, &rewards);

    // The committee signs the range's root; a member's collector reaches the quorum; its set lands.
    let range = EpochRange { from: 0, to: 3 };
    let leaves: Vec<Hash32> =
        summaries.iter().map(|s| merkle::summary_leaf(s, &codec::summary_hash(s).unwrap())).collect();
    let root = MerkleTree::new(leaves).root();
    let anchor_address: alloy::primitives::Address = anchor.parse().unwrap();
    let domain = meshd_chain::AnchorDomain {
        chain_id: 31337,
        verifying_contract: meshd_protocol::keys::EvmAddress(anchor_address.into_array()),
    };
    let committee: Vec<_> = members.iter().map(|(_, k)| k.anchor.address()).collect();
    let mut collector =
        Collector::new(CollectorConfig::default(), domain, committee.clone(), Some(committee[0]));
    let mut reached = false;
    for (_, keys) in &members {
        let signature = sign_anchor(&keys.anchor, &domain, range, root).unwrap();
        reached |= matches!(collector.offer(0, &signature).unwrap(), Offered::QuorumReached { .. });
    }
    assert!(reached);
    let submission = (0..4).find_map(|k| collector.poll_submission(k * 60_000)).unwrap();
    Anchorer::new(anvil.url.clone(), anchor_address, deployer(), test_config(1))
        .submit(submission.range, submission.root, &submission.signatures)
        .await
        .unwrap();

    let report_proof = dir.path().join("report.json");
    let report_id = ids[2][3].to_string();
    let store_arg = store_dir.to_str().unwrap().to_owned();
    let proof_arg = report_proof.to_str().unwrap().to_owned();
    // `meshd prove report` of `id` in `epoch` from the store (anchored every 4 epochs).
    let prove_report = |epoch: &'static str, id: &str| -> Vec<String> {
        ["prove", "report", "--store", &store_arg, "--region", CELL, "--epoch", epoch, "--report-id", id]
            .into_iter()
            .chain(["--anchor-every", "4"])
            .map(str::to_owned)
            .collect()
    };
    let mut report_args = prove_report("2", &report_id);
    report_args.extend(["--out".to_owned(), proof_arg.clone()]);
    succeeds(&args(&report_args));
    let json: serde_json::Value = serde_json::from_str(&fs::read_to_string(&report_proof).unwrap()).unwrap();
    assert_eq!(json["item"]["kind"], "report");
    assert_eq!(json["anchored_root"], root.to_string());
    let out = succeeds(&["verify", &proof_arg, "--rpc-url", &url, "--contract", &anchor]);
    assert!(out.starts_with(&format!("OK report {report_id}")), "{out}");

    // A report that is not in the store cannot be proven; a tampered proof does not verify.
    let missing = Hash32([7; 32]).to_string();
    let err = fails(&args(&prove_report("2", &missing)));
    assert!(err.contains("not in the summary's reports_root"), "{err}");
    // Another accepted report's id with this report's path.
    let tampered = fs::read_to_string(&report_proof).unwrap().replace(&report_id, &ids[2][0].to_string());
    let tampered_path = dir.path().join("tampered.json");
    fs::write(&tampered_path, tampered).unwrap();
    let err = fails(&["verify", tampered_path.to_str().unwrap(), "--rpc-url", &url, "--contract", &anchor]);
    assert!(err.contains("does not verify"), "{err}");

    // An epoch whose settlement the store lacks cannot be proven from it.
    let err = fails(&args(&prove_report("3", &ids[3][0].to_string())));
    assert!(err.contains("but not what it settled"), "{err}");

    // A member's reward: proven from the epoch's settlement, claimed once.
    let reward_proof = dir.path().join("reward.json");
    let gateway = rewards[1].0.to_string();
    succeeds(&[
        "prove",
        "reward",
        "--store",
        &store_arg,
        "--region",
        CELL,
        "--epoch",
        "2",
        "--id",
        &gateway,
        "--anchor-every",
        "4",
        "--out",
        reward_proof.to_str().unwrap(),
    ]);
    let reward_arg = reward_proof.to_str().unwrap();
    assert!(
        succeeds(&["verify", reward_arg, "--rpc-url", &url, "--contract", &anchor])
            .contains("reward of 11 units")
    );
    let claim = [
        "chain",
        "claim",
        reward_arg,
        "--rpc-url",
        &url,
        "--contract",
        &distributor,
        "--private-key",
        DEPLOYER_KEY,
    ];
    assert!(succeeds(&claim).starts_with("claimed in transaction"));
    assert!(fails(&claim).contains("AlreadyClaimed"));
}

/// Borrowed arguments of an owned list, for `succeeds` and `fails`.
fn args(list: &[String]) -> Vec<&str> {
    list.iter().map(String::as_str).collect()
}
