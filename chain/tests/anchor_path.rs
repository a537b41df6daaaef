//! The whole anchoring path on a real anvil: every committee member signs the
//! anchor digest of a range of finalized summaries, each member's
//! [`AnchorService`] collects the signatures until a quorum, the designated
//! member submits and the others find the anchor on chain; then a report, a
//! reward and a meter's energy are proven against the anchored root, the
//! reward claimed (once) and certificates minted from Rust.
//! Prints the timings and gas (`-- --nocapture`).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use tokio::time::Instant;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use common::*;
use meshd_chain::bindings::registry::GatewayRegistry;
use meshd_chain::bindings::token::TestToken;
use meshd_chain::proof::{self, ChainProofError, Item, Proof, ProofError};
use meshd_chain::{
    AnchorOutcome, AnchorService, Anchorer, Collector, CollectorConfig, EpochRange, ServiceEvent,
    ServiceInput, sign_anchor,
};
use meshd_protocol::geo::Region;
use meshd_protocol::keys::AnchorKey;
use meshd_protocol::merkle::{self, MerkleTree};
use meshd_protocol::message::EpochSummary;
use meshd_protocol::{GatewayId, Hash32, MeterId, keccak256};

/// Gives `key`'s account 100 ether on anvil, so that the member pays its own gas.
async fn fund(anvil: &Anvil, key: &AnchorKey) {
    let address = Address::from(key.address().0);
    let _: serde_json::Value = anvil
        .provider()
        .raw_request("anvil_setBalance".into(), (address, U256::from(10u128.pow(20))))
        .await
        .unwrap();
}

const REGION: Region = Region(0x8a2a1072b59ffff);

/// The finalized summaries of epochs 0..=3, with their report ids, reward and energy lists.
struct Epochs {
    summaries: Vec<EpochSummary>,
    reports: Vec<Vec<Hash32>>,
    rewards: Vec<(GatewayId, u64)>,
    energy: Vec<(MeterId, u64)>,
}

fn epochs(gateways: &[GatewayId], meter: MeterId) -> Epochs {
    let rewards: Vec<(GatewayId, u64)> =
        gateways.iter().enumerate().map(|(i, g)| (*g, 1_000_000 * (i as u64 + 1))).collect();
    let energy = vec![(meter, 2_500_000), (MeterId([0xee; 32]), 1_234)];
    let mut summaries = Vec::new();
    let mut reports = Vec::new();
    for epoch in 0..4u64 {
        let ids: Vec<Hash32> = (0..5).map(|i| keccak256(format!("report {epoch} {i}"))).collect();
        let (rewards_root, energy_root) = if epoch == 2 {
            (
                MerkleTree::new(rewards.iter().map(|(g, u)| merkle::reward_leaf(g, *u))).root(),
                MerkleTree::new(energy.iter().map(|(m, wh)| merkle::energy_leaf(m, *wh))).root(),
            )
        } else {
            (Hash32::ZERO, Hash32::ZERO)
        };
        summaries.push(EpochSummary {
            region: REGION,
            epoch,
            previous: Hash32::ZERO,
            reports_root: MerkleTree::new(ids.iter().map(merkle::report_leaf)).root(),
            rewards_root,
            energy_root,
            beacon_count: 1,
            witness_count: 4,
            attestation_count: 0,
            reward_units: 0,
            energy_wh: 0,
            committee_hash: Hash32::ZERO,
        });
        reports.push(ids);
    }
    Epochs { summaries, reports, rewards, energy }
}

#[tokio::test]
async fn committee_signatures_reach_quorum_land_on_chain_and_prove_report_reward_and_energy() {
    let anvil = Anvil::start().await;
    let (deployment, keys) = deploy_with_committee(&anvil, 4).await;
    let gateways: Vec<GatewayId> = members(&keys).iter().map(|m| GatewayId(m.gateway_id)).collect();
    let meter = MeterId([0x3e; 32]);
    let data = epochs(&gateways, meter);
    let range = EpochRange { from: 0, to: 3 };
    let leaves: Vec<Hash32> = data
        .summaries
        .iter()
        .map(|s| merkle::summary_leaf(s, &meshd_protocol::codec::summary_hash(s).unwrap()))
        .collect();
    let root = MerkleTree::new(leaves).root();

    // Each member signs; each runs a collector and a service that pays gas
    // from its own funded anvil account (accounts 0..=3 of the test mnemonic).
    let dom = domain(&deployment);
    let signed: Vec<_> = keys.iter().map(|k| sign_anchor(k, &dom, range, root).unwrap()).collect();
    let fallback = Duration::from_millis(700);
    let config =
        CollectorConfig { fallback_delay_ms: fallback.as_millis() as u64, ..CollectorConfig::default() };
    let mut inboxes = Vec::new();
    let mut events = Vec::new();
    let mut tasks = Vec::new();
    for key in &keys {
        fund(&anvil, key).await;
        let collector = Collector::new(config, dom, keys.iter().map(|k| k.address()), Some(key.address()));
        let payer = PrivateKeySigner::from_bytes(&B256::from(*key.secret_bytes())).unwrap();
        let anchorer = Anchorer::new(anvil.url.clone(), deployment.anchor, payer, test_config(1));
        let (service, inbox, event_rx) = AnchorService::new(collector, anchorer, 16);
        tasks.push(tokio::spawn(service.run()));
        inboxes.push(inbox);
        events.push(event_rx);
    }
    let designated =
        Collector::new(config, dom, keys.iter().map(|k| k.address()), None).designated(range).unwrap();
    let start = Instant::now();
    // Gossip: every member receives every signature, in a different order each.
    for (m, inbox) in inboxes.iter().enumerate() {
        for i in 0..signed.len() {
            inbox.send(ServiceInput::Signature(signed[(i + m) % signed.len()].clone())).await.unwrap();
        }
    }
    let mut landed = Vec::new();
    for (m, rx) in events.iter_mut().enumerate() {
        loop {
            let event = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.unwrap().unwrap();
            match event {
                ServiceEvent::QuorumReached { .. } => {}
                ServiceEvent::Anchored { range: r, root: anchored, outcome } => {
                    assert_eq!((r, anchored), (range, root));
                    landed.push((keys[m].address(), outcome, start.elapsed()));
                    break;
                }
                other => panic!("member {m}: unexpected {other:?}"),
            }
        }
    }
    drop(inboxes);
    for task in tasks {
        task.await.unwrap();
    }
    let ours: Vec<_> =
        landed.iter().filter(|(_, o, _)| matches!(o, AnchorOutcome::Anchored { .. })).collect();
    assert_eq!(ours.len(), 1, "exactly one transaction anchors: {landed:?}");
    assert_eq!(ours[0].0, designated, "the designated member submits");
    let AnchorOutcome::Anchored { gas_used, .. } = ours[0].1 else { unreachable!() };
    println!(
        "quorum of 3 of 4 collected and anchored by the designated member in {:?} (gas {gas_used})",
        ours[0].2
    );
    for (member, outcome, at) in &landed {
        if *member != designated {
            assert!(matches!(outcome, AnchorOutcome::AlreadyAnchored { .. }), "{outcome:?}");
            assert!(*at >= fallback, "fallback members wait their turn");
            println!("fallback member found it on chain after {at:?}");
        }
    }
    assert_eq!(root_of(&anvil.url, deployment.anchor, range).await.0, root.0);

    // A report of epoch 1, proven against the chain.
    let report_leaves: Vec<Hash32> = data.reports[1].iter().map(merkle::report_leaf).collect();
    let report = Proof::build(
        range,
        &data.summaries,
        1,
        Item::Report { report_id: data.reports[1][3] },
        &report_leaves,
    )
    .unwrap();
    let json = serde_json::to_string_pretty(&report).unwrap();
    let parsed: Proof = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed, report);
    assert_eq!(proof::verify_on_chain(anvil.url.clone(), deployment.anchor, &parsed).await.unwrap(), root);
    let mut forged = report.clone();
    forged.item = Item::Report { report_id: keccak256("not accepted") };
    assert!(matches!(
        proof::verify_on_chain(anvil.url.clone(), deployment.anchor, &forged).await,
        Err(ChainProofError::Proof(ProofError::BadItemProof("reports_root")))
    ));
    let mut unanchored = report.clone();
    unanchored.range.to = 7;
    unanchored.summary_proof.clear();
    assert!(proof::verify_on_chain(anvil.url.clone(), deployment.anchor, &unanchored).await.is_err());

    // The reward of gateway 1 in epoch 2: claimed once, refused the second time.
    let reward_leaves: Vec<Hash32> = data.rewards.iter().map(|(g, u)| merkle::reward_leaf(g, *u)).collect();
    let (gateway, units) = data.rewards[1];
    let reward = Proof::build(
        range,
        &data.summaries,
        2,
        Item::Reward { gateway_id: Hash32(gateway.0), units },
        &reward_leaves,
    )
    .unwrap();
    let owner = Address::from(keys[1].address().0);
    let token = TestToken::new(deployment.token, anvil.provider());
    let before = token.balanceOf(owner).call().await.unwrap();
    let claimed = proof::claim(anvil.url.clone(), deployment.distributor, deployer(), &reward).await.unwrap();
    let after = token.balanceOf(owner).call().await.unwrap();
    assert_eq!(after - before, U256::from(units), "one token base unit per sub-unit");
    let again = proof::claim(anvil.url.clone(), deployment.distributor, deployer(), &reward).await;
    match again {
        Err(ChainProofError::Call { source, .. }) => assert!(
            source
                .as_decoded_error::<meshd_chain::bindings::distributor::RewardDistributor::AlreadyClaimed>()
                .is_some(),
            "{source}"
        ),
        other => panic!("the second claim must be refused as AlreadyClaimed: {other:?}"),
    }
    println!("reward claim gas: {}", claimed.gas_used);

    // The meter's 2.5 MWh of epoch 2: 2 certificates, 0.5 MWh carried.
    let registry = GatewayRegistry::new(
        deployment.registry,
        ProviderBuilder::new()
            .wallet(alloy::network::EthereumWallet::from(deployer()))
            .connect_http(anvil.url.clone()),
    );
    registry
        .registerMeter(B256::from(meter.0), owner, 3_000_000)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let energy_leaves: Vec<Hash32> = data.energy.iter().map(|(m, wh)| merkle::energy_leaf(m, *wh)).collect();
    let (_, wh) = data.energy[0];
    let energy = Proof::build(
        range,
        &data.summaries,
        2,
        Item::Energy { meter_id: Hash32(meter.0), wh },
        &energy_leaves,
    )
    .unwrap();
    let minted = proof::mint(anvil.url.clone(), deployment.certificate, deployer(), &energy).await.unwrap();
    let certificates =
        meshd_chain::bindings::certificate::EnergyCertificate::new(deployment.certificate, anvil.provider());
    assert_eq!(certificates.balanceOf(owner, U256::from(1)).call().await.unwrap(), U256::from(2));
    assert!(
        proof::mint(anvil.url.clone(), deployment.certificate, deployer(), &energy).await.is_err(),
        "minted once"
    );
    assert!(matches!(
        proof::mint(anvil.url.clone(), deployment.certificate, deployer(), &reward).await,
        Err(ChainProofError::WrongKind { .. })
    ));
    println!("certificate mint gas (2 certificates, new batch): {}", minted.gas_used);
}
