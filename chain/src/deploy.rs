//! Deploying the contracts for development (anvil, a test net): registry,
//! anchor, a test reward token, distributor and certificate, with the
//! deployer as admin, registrar and committee manager, the committee's
//! gateways registered, the first committee scheduled and the distributor
//! funded. `meshd chain deploy --rpc URL` calls [`deploy_dev`].
//!
//! Production deployments are done by the operators' multisig, not by this.

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use meshd_protocol::keys::EvmAddress;

use crate::bindings::anchor::EpochAnchor;
use crate::bindings::certificate::EnergyCertificate;
use crate::bindings::distributor::RewardDistributor;
use crate::bindings::registry::GatewayRegistry;
use crate::bindings::token::TestToken;

/// A gateway registered by the deployment and placed on the first committee.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitteeMember {
    /// The gateway's ed25519 id.
    pub gateway_id: [u8; 32],
    /// The account that receives its rewards.
    pub owner: EvmAddress,
    /// Its secp256k1 anchor key's address.
    pub anchor_address: EvmAddress,
    /// Its H3 cell.
    pub location: u64,
}

/// What to deploy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevDeployConfig {
    /// The first anchor committee (any order; sorted before scheduling). Empty: none scheduled.
    pub committee: Vec<CommitteeMember>,
    /// The committee's first epoch.
    pub committee_start_epoch: u64,
    /// The protocol's epoch length, s (the certificate's capacity check).
    pub epoch_seconds: u64,
    /// Epochs after which a meter's energy can no longer be minted.
    pub mint_window_epochs: u64,
    /// Test-token supply minted to the deployer, base units (6 decimals).
    pub token_supply: U256,
    /// Part of the supply transferred to the distributor for claims.
    pub distributor_funding: U256,
    /// The ERC-1155 metadata URI template.
    pub certificate_uri: String,
}

impl Default for DevDeployConfig {
    /// No committee; 3,600 s epochs (the protocol's default epoch); a 24-epoch
    /// mint window (a day of hourly epochs); 10⁹ tokens of 6 decimals (far more
    /// than any test pays), all of it to the distributor.
    fn default() -> Self {
        let supply = U256::from(1_000_000_000u64) * U256::from(1_000_000u64);
        DevDeployConfig {
            committee: Vec::new(),
            committee_start_epoch: 0,
            epoch_seconds: 3_600,
            mint_window_epochs: 24,
            token_supply: supply,
            distributor_funding: supply,
            certificate_uri: "https://meshd.invalid/certificate/{id}.json".to_owned(),
        }
    }
}

/// The deployed contracts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deployment {
    /// The chain's id.
    pub chain_id: u64,
    /// `GatewayRegistry`.
    pub registry: Address,
    /// `EpochAnchor`.
    pub anchor: Address,
    /// The test reward token.
    pub token: Address,
    /// `RewardDistributor`.
    pub distributor: Address,
    /// `EnergyCertificate`.
    pub certificate: Address,
    /// The block of the registry's deployment: where registry event scans start.
    pub deployed_at: u64,
}

/// Why [`deploy_dev`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    /// A deployment or a wiring transaction failed.
    #[error("deployment step `{step}` failed: {source}")]
    Step {
        /// Which step.
        step: &'static str,
        /// Why.
        #[source]
        source: alloy::contract::Error,
    },
    /// Waiting for a transaction's receipt failed.
    #[error("deployment step `{step}` was not confirmed: {source}")]
    Receipt {
        /// Which step.
        step: &'static str,
        /// Why.
        #[source]
        source: alloy::providers::PendingTransactionError,
    },
    /// A wiring transaction was mined but reverted.
    #[error("deployment step `{step}` reverted")]
    Reverted {
        /// Which step.
        step: &'static str,
    },
}

fn step(step: &'static str) -> impl FnOnce(alloy::contract::Error) -> DeployError {
    move |source| DeployError::Step { step, source }
}

async fn confirm<N>(
    step_name: &'static str,
    pending: Result<alloy::providers::PendingTransactionBuilder<N>, alloy::contract::Error>,
) -> Result<(), DeployError>
where
    N: alloy::network::Network,
{
    let receipt = pending
        .map_err(step(step_name))?
        .get_receipt()
        .await
        .map_err(|source| DeployError::Receipt { step: step_name, source })?;
    use alloy::network::ReceiptResponse;
    if receipt.status() { Ok(()) } else { Err(DeployError::Reverted { step: step_name }) }
}

/// Deploys and wires all contracts from `deployer`'s account at `rpc_url`.
/// For development chains: every transaction is awaited in turn.
pub async fn deploy_dev(
    rpc_url: crate::Url,
    deployer: PrivateKeySigner,
    config: &DevDeployConfig,
) -> Result<Deployment, DeployError> {
    let admin = deployer.address();
    let provider = ProviderBuilder::new().wallet(EthereumWallet::from(deployer)).connect_http(rpc_url);
    let chain_id = provider.get_chain_id().await.map_err(|e| step("eth_chainId")(e.into()))?;

    let registry = GatewayRegistry::deploy(&provider, admin).await.map_err(step("deploy GatewayRegistry"))?;
    let deployed_at = provider.get_block_number().await.map_err(|e| step("eth_blockNumber")(e.into()))?;
    let anchor = EpochAnchor::deploy(&provider, admin, *registry.address())
        .await
        .map_err(step("deploy EpochAnchor"))?;
    let token = TestToken::deploy(&provider, config.token_supply).await.map_err(step("deploy TestToken"))?;
    // One token base unit per reward sub-unit: the test token has 6 decimals,
    // the protocol 10⁶ sub-units per unit (docs/chain.md §7).
    let tokens_per_unit = U256::from(1);
    let distributor = RewardDistributor::deploy(
        &provider,
        *anchor.address(),
        *registry.address(),
        *token.address(),
        tokens_per_unit,
    )
    .await
    .map_err(step("deploy RewardDistributor"))?;
    let certificate = EnergyCertificate::deploy(
        &provider,
        *anchor.address(),
        *registry.address(),
        config.epoch_seconds,
        config.mint_window_epochs,
        config.certificate_uri.clone(),
    )
    .await
    .map_err(step("deploy EnergyCertificate"))?;

    if !config.distributor_funding.is_zero() {
        confirm(
            "fund RewardDistributor",
            token.transfer(*distributor.address(), config.distributor_funding).send().await,
        )
        .await?;
    }

    let mut members = config.committee.clone();
    members.sort_by_key(|m| m.anchor_address);
    for member in &members {
        confirm(
            "registerGateway",
            registry
                .registerGateway(
                    B256::from(member.gateway_id),
                    Address::from(member.owner.0),
                    Address::from(member.anchor_address.0),
                    member.location,
                )
                .send()
                .await,
        )
        .await?;
    }
    if !members.is_empty() {
        let addresses: Vec<Address> = members.iter().map(|m| Address::from(m.anchor_address.0)).collect();
        confirm(
            "scheduleCommittee",
            anchor.scheduleCommittee(config.committee_start_epoch, addresses).send().await,
        )
        .await?;
    }

    Ok(Deployment {
        chain_id,
        registry: *registry.address(),
        anchor: *anchor.address(),
        token: *token.address(),
        distributor: *distributor.address(),
        certificate: *certificate.address(),
        deployed_at,
    })
}
