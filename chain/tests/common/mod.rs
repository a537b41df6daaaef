//! A real anvil for the integration tests: installed with
//! `chain/contracts/setup.sh` when missing, started on 127.0.0.1 on a free
//! port, killed when the [`Anvil`] guard drops. If anvil cannot be installed
//! or started the test panics: these tests never pass without a chain.

#![allow(dead_code, clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use alloy::primitives::{Address, B256};
use alloy::providers::{Provider, RootProvider};
use alloy::signers::local::PrivateKeySigner;
use meshd_chain::{
    AnchorConfig, AnchorDomain, AnchorSignature, Anchorer, CommitteeMember, Deployment, DevDeployConfig,
    EpochRange, RetryPolicy, Url, deploy_dev, sort_by_signer,
};
use meshd_protocol::Hash32;
use meshd_protocol::keys::{AnchorKey, EvmAddress};

/// anvil's first default account (the public test mnemonic): deployer and payer.
pub const DEPLOYER_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

/// `chain/contracts`, also from the daemon's tests that include this module.
fn contracts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../chain/contracts")
}

fn anvil_binary() -> PathBuf {
    contracts_dir().join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
}

/// Makes sure anvil is installed, running `setup.sh` (npm) if it is not.
fn ensure_anvil() -> PathBuf {
    let binary = anvil_binary();
    if !binary.exists() {
        let status = Command::new("bash")
            .arg(contracts_dir().join("setup.sh"))
            .status()
            .unwrap_or_else(|e| panic!("cannot run chain/contracts/setup.sh to install anvil: {e}"));
        assert!(
            status.success(),
            "chain/contracts/setup.sh failed ({status}); anvil is required for these tests"
        );
    }
    assert!(binary.exists(), "anvil missing at {} after setup.sh", binary.display());
    binary
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
    listener.local_addr().expect("local address").port()
}

/// A running anvil; killed on drop.
pub struct Anvil {
    child: Option<Child>,
    pub port: u16,
    pub url: Url,
}

impl Anvil {
    /// Starts anvil on a free loopback port and waits until it answers.
    pub async fn start() -> Anvil {
        Anvil::start_on(free_port(), &[]).await
    }

    /// Starts anvil on `port` with extra arguments and waits until it answers.
    pub async fn start_on(port: u16, extra: &[&str]) -> Anvil {
        let binary = ensure_anvil();
        let child = Command::new(&binary)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--hardfork",
                "cancun",
                "--accounts",
                "4",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start anvil at {}: {e}", binary.display()));
        let url: Url = format!("http://127.0.0.1:{port}").parse().expect("valid URL");
        let mut anvil = Anvil { child: Some(child), port, url };
        let provider = anvil.provider();
        for _ in 0..200 {
            if provider.get_chain_id().await.is_ok() {
                return anvil;
            }
            if let Some(child) = anvil.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("anvil exited at start with {status}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("anvil did not answer on port {port} within 10 s");
    }

    pub fn provider(&self) -> RootProvider {
        RootProvider::new_http(self.url.clone())
    }

    /// Kills anvil now (its state is lost unless dumped first).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Mines one block.
    pub async fn mine(&self) {
        let _: serde_json::Value =
            self.provider().raw_request("evm_mine".into(), ()).await.expect("evm_mine");
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn deployer() -> PrivateKeySigner {
    DEPLOYER_KEY.parse().expect("valid key")
}

/// Committee keys 1..=n (secret = the index, big-endian).
pub fn committee_keys(n: usize) -> Vec<AnchorKey> {
    (1..=n as u64)
        .map(|i| {
            let mut secret = [0u8; 32];
            secret[24..].copy_from_slice(&(i + 1000).to_be_bytes());
            AnchorKey::from_secret(secret).expect("small scalars are valid")
        })
        .collect()
}

pub fn members(keys: &[AnchorKey]) -> Vec<CommitteeMember> {
    keys.iter()
        .enumerate()
        .map(|(i, key)| {
            let mut gateway_id = [0u8; 32];
            gateway_id[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
            CommitteeMember {
                gateway_id,
                owner: key.address(),
                anchor_address: key.address(),
                location: 0x8a2a1072b59ffff,
            }
        })
        .collect()
}

/// Deploys everything with a committee of `n` starting at epoch 0.
pub async fn deploy_with_committee(anvil: &Anvil, n: usize) -> (Deployment, Vec<AnchorKey>) {
    let keys = committee_keys(n);
    let config = DevDeployConfig { committee: members(&keys), ..DevDeployConfig::default() };
    let deployment = deploy_dev(anvil.url.clone(), deployer(), &config).await.expect("deploy");
    (deployment, keys)
}

pub fn domain(deployment: &Deployment) -> AnchorDomain {
    AnchorDomain {
        chain_id: deployment.chain_id,
        verifying_contract: EvmAddress(deployment.anchor.into_array()),
    }
}

/// Signatures of `signers` over the anchor digest, sorted by signer.
pub fn sign(
    deployment: &Deployment,
    range: EpochRange,
    root: &Hash32,
    signers: &[AnchorKey],
) -> Vec<AnchorSignature> {
    let digest = domain(deployment).anchor_digest(range, root);
    let mut signatures: Vec<AnchorSignature> = signers
        .iter()
        .map(|key| AnchorSignature {
            signer: key.address(),
            signature: key.sign_digest(&digest.0).expect("sign"),
        })
        .collect();
    sort_by_signer(&mut signatures);
    signatures
}

/// Fast polling and patient retries for tests.
pub fn test_config(confirmations: u64) -> AnchorConfig {
    AnchorConfig {
        confirmations,
        poll_interval: Duration::from_millis(50),
        retry: RetryPolicy {
            initial_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(500),
            max_attempts: 60,
        },
        ..AnchorConfig::default()
    }
}

pub fn anchorer(anvil: &Anvil, deployment: &Deployment, confirmations: u64) -> Anchorer {
    Anchorer::new(anvil.url.clone(), deployment.anchor, deployer(), test_config(confirmations))
}

/// `rootOf(range)` at the head.
pub async fn root_of(url: &Url, anchor: Address, range: EpochRange) -> B256 {
    let contract = meshd_chain::bindings::anchor::EpochAnchor::new(
        anchor,
        RootProvider::<alloy::network::Ethereum>::new_http(url.clone()),
    );
    contract.rootOf(range.from, range.to).call().await.expect("rootOf")
}
