//! Reading `GatewayRegistry` into plain Rust types for the node.
//!
//! The registry's mappings cannot be enumerated on chain, so the full view is
//! rebuilt from its events: [`RegistryView::apply`] folds one
//! [`RegistryEvent`] (pure, testable); [`RegistryReader::snapshot`] fetches
//! the events of a block range and folds them. Single entries are read
//! directly with [`RegistryReader::gateway`] and [`RegistryReader::meter`].

use std::collections::BTreeMap;

use alloy::eips::BlockId;
use alloy::network::Ethereum;
use alloy::primitives::{Address, B256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::{Filter, Log};
use alloy::sol_types::SolEventInterface;
use meshd_protocol::keys::EvmAddress;
use meshd_protocol::{GatewayId, MeterId};

use crate::bindings::registry::GatewayRegistry::{self, GatewayRegistryEvents};
use crate::retry::{RetryPolicy, retry};

/// A registered gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gateway {
    /// The account that receives its rewards.
    pub owner: EvmAddress,
    /// Its secp256k1 anchor key's address (what committees list).
    pub anchor_address: EvmAddress,
    /// Its H3 cell as registered.
    pub location: u64,
}

/// A registered energy meter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meter {
    /// The account that receives its certificates.
    pub owner: EvmAddress,
    /// Its rated capacity, W.
    pub rated_watts: u64,
}

/// One registry change, as its event reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryEvent {
    /// A gateway was registered.
    GatewayRegistered {
        /// Its id.
        id: GatewayId,
        /// Its entry.
        gateway: Gateway,
    },
    /// A gateway's anchor address or location changed.
    GatewayUpdated {
        /// Its id.
        id: GatewayId,
        /// The new anchor address.
        anchor_address: EvmAddress,
        /// The new location.
        location: u64,
    },
    /// A gateway changed owner.
    GatewayTransferred {
        /// Its id.
        id: GatewayId,
        /// The new owner.
        owner: EvmAddress,
    },
    /// A gateway was removed.
    GatewayRemoved {
        /// Its id.
        id: GatewayId,
    },
    /// A meter was registered.
    MeterRegistered {
        /// Its id.
        id: MeterId,
        /// Its entry.
        meter: Meter,
    },
    /// A meter's capacity changed.
    MeterUpdated {
        /// Its id.
        id: MeterId,
        /// The new capacity, W.
        rated_watts: u64,
    },
    /// A meter changed owner.
    MeterTransferred {
        /// Its id.
        id: MeterId,
        /// The new owner.
        owner: EvmAddress,
    },
    /// A meter was removed.
    MeterRemoved {
        /// Its id.
        id: MeterId,
    },
}

fn evm(address: Address) -> EvmAddress {
    EvmAddress(address.into_array())
}

impl RegistryEvent {
    /// Decodes a registry log; `None` for logs that are not registry changes (role events).
    pub fn from_log(log: &Log) -> Option<RegistryEvent> {
        let decoded = GatewayRegistryEvents::decode_log(&log.inner).ok()?;
        Some(match decoded.data {
            GatewayRegistryEvents::GatewayRegistered(e) => RegistryEvent::GatewayRegistered {
                id: GatewayId(e.gatewayId.0),
                gateway: Gateway {
                    owner: evm(e.owner),
                    anchor_address: evm(e.anchorAddress),
                    location: e.location,
                },
            },
            GatewayRegistryEvents::GatewayUpdated(e) => RegistryEvent::GatewayUpdated {
                id: GatewayId(e.gatewayId.0),
                anchor_address: evm(e.anchorAddress),
                location: e.location,
            },
            GatewayRegistryEvents::GatewayTransferred(e) => {
                RegistryEvent::GatewayTransferred { id: GatewayId(e.gatewayId.0), owner: evm(e.to) }
            }
            GatewayRegistryEvents::GatewayRemoved(e) => {
                RegistryEvent::GatewayRemoved { id: GatewayId(e.gatewayId.0) }
            }
            GatewayRegistryEvents::MeterRegistered(e) => RegistryEvent::MeterRegistered {
                id: MeterId(e.meterId.0),
                meter: Meter { owner: evm(e.owner), rated_watts: e.ratedWatts },
            },
            GatewayRegistryEvents::MeterUpdated(e) => {
                RegistryEvent::MeterUpdated { id: MeterId(e.meterId.0), rated_watts: e.ratedWatts }
            }
            GatewayRegistryEvents::MeterTransferred(e) => {
                RegistryEvent::MeterTransferred { id: MeterId(e.meterId.0), owner: evm(e.to) }
            }
            GatewayRegistryEvents::MeterRemoved(e) => {
                RegistryEvent::MeterRemoved { id: MeterId(e.meterId.0) }
            }
            _ => return None,
        })
    }
}

/// The registry's content, as rebuilt from its events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistryView {
    /// Gateways by id.
    pub gateways: BTreeMap<GatewayId, Gateway>,
    /// Meters by id.
    pub meters: BTreeMap<MeterId, Meter>,
    /// The gateway that uses each anchor address (committee members are anchor addresses).
    pub anchors: BTreeMap<EvmAddress, GatewayId>,
}

impl RegistryView {
    /// Applies one change (events arrive in chain order; an update of an
    /// unknown entry is ignored, as the contract would have refused it).
    pub fn apply(&mut self, event: &RegistryEvent) {
        match *event {
            RegistryEvent::GatewayRegistered { id, gateway } => {
                self.anchors.insert(gateway.anchor_address, id);
                self.gateways.insert(id, gateway);
            }
            RegistryEvent::GatewayUpdated { id, anchor_address, location } => {
                if let Some(gateway) = self.gateways.get_mut(&id) {
                    self.anchors.remove(&gateway.anchor_address);
                    gateway.anchor_address = anchor_address;
                    gateway.location = location;
                    self.anchors.insert(anchor_address, id);
                }
            }
            RegistryEvent::GatewayTransferred { id, owner } => {
                if let Some(gateway) = self.gateways.get_mut(&id) {
                    gateway.owner = owner;
                }
            }
            RegistryEvent::GatewayRemoved { id } => {
                if let Some(gateway) = self.gateways.remove(&id) {
                    self.anchors.remove(&gateway.anchor_address);
                }
            }
            RegistryEvent::MeterRegistered { id, meter } => {
                self.meters.insert(id, meter);
            }
            RegistryEvent::MeterUpdated { id, rated_watts } => {
                if let Some(meter) = self.meters.get_mut(&id) {
                    meter.rated_watts = rated_watts;
                }
            }
            RegistryEvent::MeterTransferred { id, owner } => {
                if let Some(meter) = self.meters.get_mut(&id) {
                    meter.owner = owner;
                }
            }
            RegistryEvent::MeterRemoved { id } => {
                self.meters.remove(&id);
            }
        }
    }
}

/// Why a registry read failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// An RPC call kept failing.
    #[error("registry read `{operation}` failed after {attempts} attempts: {source}")]
    Rpc {
        /// What was asked.
        operation: &'static str,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        #[source]
        source: alloy::contract::Error,
    },
}

fn rpc(operation: &'static str) -> impl FnOnce((alloy::contract::Error, u32)) -> RegistryError {
    move |(source, attempts)| RegistryError::Rpc { operation, attempts, source }
}

/// Reads one `GatewayRegistry`.
#[derive(Clone, Debug)]
pub struct RegistryReader {
    provider: RootProvider<Ethereum>,
    contract: GatewayRegistry::GatewayRegistryInstance<RootProvider<Ethereum>>,
    retry: RetryPolicy,
}

impl RegistryReader {
    /// A reader of the registry at `registry` over HTTP at `rpc_url`. No IO happens here.
    pub fn new(rpc_url: crate::Url, registry: Address, retry: RetryPolicy) -> RegistryReader {
        let provider = RootProvider::new_http(rpc_url);
        RegistryReader { contract: GatewayRegistry::new(registry, provider.clone()), provider, retry }
    }

    /// The gateway `id`, or `None` when it is not registered.
    pub async fn gateway(&self, id: &GatewayId, at: BlockId) -> Result<Option<Gateway>, RegistryError> {
        let entry = retry(&self.retry, "gateway", || async {
            self.contract.gateway(B256::from(id.0)).block(at).call().await
        })
        .await
        .map_err(rpc("gateway"))?;
        Ok((entry.owner != Address::ZERO).then(|| Gateway {
            owner: evm(entry.owner),
            anchor_address: evm(entry.anchorAddress),
            location: entry.location,
        }))
    }

    /// The meter `id`, or `None` when it is not registered.
    pub async fn meter(&self, id: &MeterId, at: BlockId) -> Result<Option<Meter>, RegistryError> {
        let entry = retry(&self.retry, "meter", || async {
            self.contract.meter(B256::from(id.0)).block(at).call().await
        })
        .await
        .map_err(rpc("meter"))?;
        Ok((entry.owner != Address::ZERO)
            .then(|| Meter { owner: evm(entry.owner), rated_watts: entry.ratedWatts }))
    }

    /// The registry's changes in blocks `from..=to`, in chain order.
    pub async fn events(&self, from: u64, to: u64) -> Result<Vec<RegistryEvent>, RegistryError> {
        let filter = Filter::new().address(*self.contract.address()).from_block(from).to_block(to);
        let logs = retry(&self.retry, "eth_getLogs", || async {
            self.provider.get_logs(&filter).await.map_err(Into::into)
        })
        .await
        .map_err(rpc("eth_getLogs"))?;
        Ok(logs.iter().filter_map(RegistryEvent::from_log).collect())
    }

    /// The chain's head: its block number and timestamp (Unix s), the chain
    /// time a registry read at that block is current to.
    pub async fn head(&self) -> Result<(u64, u64), RegistryError> {
        let block = retry(&self.retry, "eth_getBlockByNumber", || async {
            self.provider.get_block_by_number(alloy::eips::BlockNumberOrTag::Latest).await.map_err(Into::into)
        })
        .await
        .map_err(rpc("eth_getBlockByNumber"))?;
        Ok(block.map_or((0, 0), |b| (b.header.number, b.header.timestamp)))
    }

    /// The whole registry as of the head, rebuilt from the events since
    /// `deployed_at` (the registry's deployment block). Returns the view and
    /// the head it is current to; follow it with [`RegistryReader::events`] from `head + 1`.
    pub async fn snapshot(&self, deployed_at: u64) -> Result<(RegistryView, u64), RegistryError> {
        let head = retry(&self.retry, "eth_blockNumber", || async {
            self.provider.get_block_number().await.map_err(Into::into)
        })
        .await
        .map_err(rpc("eth_blockNumber"))?;
        let mut view = RegistryView::default();
        for event in self.events(deployed_at, head).await? {
            view.apply(&event);
        }
        Ok((view, head))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_moves_the_anchor_address_and_removal_forgets_it() {
        let id = GatewayId([1; 32]);
        let mut view = RegistryView::default();
        let gateway =
            Gateway { owner: EvmAddress([2; 20]), anchor_address: EvmAddress([3; 20]), location: 9 };
        view.apply(&RegistryEvent::GatewayRegistered { id, gateway });
        view.apply(&RegistryEvent::GatewayUpdated { id, anchor_address: EvmAddress([4; 20]), location: 10 });
        assert_eq!(view.anchors.get(&EvmAddress([4; 20])), Some(&id));
        assert!(!view.anchors.contains_key(&EvmAddress([3; 20])));
        view.apply(&RegistryEvent::GatewayTransferred { id, owner: EvmAddress([5; 20]) });
        assert_eq!(view.gateways[&id].owner, EvmAddress([5; 20]));
        view.apply(&RegistryEvent::GatewayRemoved { id });
        assert!(view.gateways.is_empty() && view.anchors.is_empty());
    }

    #[test]
    fn meter_changes_fold_into_the_view() {
        let id = MeterId([1; 32]);
        let mut view = RegistryView::default();
        view.apply(&RegistryEvent::MeterRegistered {
            id,
            meter: Meter { owner: EvmAddress([2; 20]), rated_watts: 5 },
        });
        view.apply(&RegistryEvent::MeterUpdated { id, rated_watts: 7 });
        view.apply(&RegistryEvent::MeterTransferred { id, owner: EvmAddress([3; 20]) });
        assert_eq!(view.meters[&id], Meter { owner: EvmAddress([3; 20]), rated_watts: 7 });
        view.apply(&RegistryEvent::MeterRemoved { id });
        assert!(view.meters.is_empty());
    }
}
