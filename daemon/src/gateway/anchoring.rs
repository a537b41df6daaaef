//! Anchoring from `meshd run`: when the chain is configured
//! (`chain.rpc_url`, `chain.anchor_contract`, `chain.registry_contract`),
//! the gateway signs each anchor digest the node asks for, publishes its
//! signature on the global topic, collects the committee's signatures and
//! submits a quorum to `EpochAnchor` ([`meshd_chain::AnchorService`]: the
//! designated member first, the others after a fallback delay).
//!
//! The anchor committee is `EpochAnchor`'s committee in force (or the first
//! one, pending until the first anchor), read at start: anchor addresses of
//! gateways of any region. A gateway whose anchor address is not on it
//! collects nothing and signs nothing. Transactions are paid by this
//! gateway's anchor account, which must hold funds on the chain.

use std::str::FromStr;

use alloy::primitives::{Address, B256};
use alloy::signers::local::PrivateKeySigner;
use anyhow::Context as _;
use meshd_chain::{
    AnchorConfig, AnchorService, Anchorer, Collector, CollectorConfig, RetryPolicy, ServiceEvent,
    ServiceInput, Url, anchor_committee,
};
use meshd_config::Config;
use meshd_protocol::anchor::AnchorDomain;
use meshd_protocol::keys::{EvmAddress, KeyFile};
use tokio::sync::mpsc;

/// Signatures and events queued between the loop and the anchoring task: a
/// committee of at most 128 members signs one range per anchoring period.
const QUEUE: usize = 256;

/// The loop's handle on the anchoring task.
pub struct Anchoring {
    /// Signatures (and committee changes) into the collector.
    pub signatures: mpsc::Sender<ServiceInput>,
    /// What the task reports.
    pub events: mpsc::Receiver<ServiceEvent>,
    /// The anchor committee's size and quorum, for the logs.
    pub committee: (usize, usize),
}

/// Starts anchoring if the chain is configured and this gateway is on the
/// anchor committee; `None` (with the reason logged) otherwise.
pub async fn start(
    config: &Config,
    keys: &KeyFile,
    domain: AnchorDomain,
) -> anyhow::Result<Option<Anchoring>> {
    let chain = &config.chain;
    // The registry is needed too: the anchor book computes every region's
    // committee from it.
    let (Some(rpc), Some(anchor), Some(_)) =
        (&chain.rpc_url, &chain.anchor_contract, &chain.registry_contract)
    else {
        tracing::info!(
            "anchoring is off: set chain.rpc_url, chain.anchor_contract and chain.registry_contract to anchor"
        );
        return Ok(None);
    };
    let url = Url::from_str(rpc).with_context(|| format!("`chain.rpc_url` = {rpc:?}"))?;
    let anchor =
        Address::from_str(anchor).with_context(|| format!("`chain.anchor_contract` = {anchor:?}"))?;
    let committee = anchor_committee(url.clone(), anchor, chain.from_block, &RetryPolicy::default())
        .await
        .with_context(|| format!("cannot read the anchor committee of {anchor} at {rpc}"))?;
    let own: EvmAddress = keys.anchor.address();
    if !committee.members.contains(&own) {
        tracing::info!(
            anchor = %own,
            version = committee.version,
            members = committee.members.len(),
            "this gateway is not on the anchor committee: it signs no anchors"
        );
        return Ok(None);
    }
    let committee = committee.members;
    let collector = Collector::new(CollectorConfig::default(), domain, committee.iter().copied(), Some(own));
    let size = (collector.committee().len(), collector.quorum());
    let signer = PrivateKeySigner::from_bytes(&B256::from(*keys.anchor.secret_bytes()))
        .map_err(|e| anyhow::anyhow!("the anchor key cannot sign transactions: {e}"))?;
    let anchorer = Anchorer::new(url, anchor, signer, AnchorConfig::default());
    let (service, signatures, events) = AnchorService::new(collector, anchorer, QUEUE);
    tokio::spawn(service.run());
    tracing::info!(committee = size.0, quorum = size.1, contract = %anchor, "anchoring on");
    Ok(Some(Anchoring { signatures, events, committee: size }))
}
