//! Reading the anchor committee from `EpochAnchor`: the anchor addresses
//! whose signatures `anchor` counts. The contract keeps members as a
//! mapping, so the list comes from the `CommitteeScheduled` event of the
//! committee's version (docs/chain.md §3).

use alloy::network::Ethereum;
use alloy::primitives::{Address, U256};
use alloy::providers::RootProvider;
use meshd_protocol::keys::EvmAddress;

use crate::bindings::anchor::EpochAnchor;
use crate::retry::{RetryPolicy, retry};

/// Why the committee could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommitteeError {
    /// An RPC call kept failing.
    #[error("anchor committee read `{operation}` failed after {attempts} attempts: {source}")]
    Rpc {
        /// What was asked.
        operation: &'static str,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        #[source]
        source: alloy::contract::Error,
    },
    /// No committee was ever scheduled: nothing can be anchored.
    #[error("EpochAnchor {0} has no committee; fix: schedule one (`meshd chain deploy --member …`)")]
    None(Address),
    /// The committee's `CommitteeScheduled` event is not in the blocks read.
    #[error(
        "the event scheduling committee {version} is not in blocks {from_block}.. of EpochAnchor {contract}"
    )]
    EventMissing {
        /// The contract.
        contract: Address,
        /// The committee version.
        version: u32,
        /// The first block read.
        from_block: u64,
    },
}

/// The anchor committee a node signs for: its version and members (sorted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnchorCommittee {
    /// The committee's version.
    pub version: u32,
    /// Its first epoch.
    pub start_epoch: u64,
    /// The members' anchor addresses, ascending.
    pub members: Vec<EvmAddress>,
}

/// The committee in force at `EpochAnchor` `contract`, or the pending one
/// while none is in force yet (the first committee is activated by the
/// first anchor). Events are read from `from_block` on.
pub async fn anchor_committee(
    rpc_url: crate::Url,
    contract: Address,
    from_block: u64,
    retry_policy: &RetryPolicy,
) -> Result<AnchorCommittee, CommitteeError> {
    let provider: RootProvider<Ethereum> = RootProvider::new_http(rpc_url);
    let anchor = EpochAnchor::new(contract, provider);
    let state = retry(retry_policy, "committee", || async { anchor.committee().call().await })
        .await
        .map_err(|(source, attempts)| CommitteeError::Rpc { operation: "committee", attempts, source })?;
    let version = if state.version != 0 { state.version } else { state.pendingVersion };
    if version == 0 {
        return Err(CommitteeError::None(contract));
    }
    let events = retry(retry_policy, "eth_getLogs", || async {
        anchor.CommitteeScheduled_filter().topic1(U256::from(version)).from_block(from_block).query().await
    })
    .await
    .map_err(|(source, attempts)| CommitteeError::Rpc { operation: "eth_getLogs", attempts, source })?;
    let (event, _) =
        events.into_iter().next().ok_or(CommitteeError::EventMissing { contract, version, from_block })?;
    let mut members: Vec<EvmAddress> = event.members.iter().map(|a| EvmAddress(a.into_array())).collect();
    members.sort();
    Ok(AnchorCommittee { version, start_epoch: event.startEpoch, members })
}
