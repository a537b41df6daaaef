//! The committee from the chain: when `registry.members` is empty, the
//! gateway reads `GatewayRegistry` (`chain.rpc_url`, `chain.registry_contract`)
//! and follows its events.
//!
//! At start the whole registry is rebuilt from its events
//! ([`RegistryReader::snapshot`]) and the gateway's committee region and its
//! members are computed from the registered locations
//! ([`meshd_node::committee::committee_regions`]). A task then polls the
//! chain every [`POLL`] for new registry events; whenever the members of the
//! committee region change, it hands the new list to the loop with the chain
//! time of the block it read ([`Update`]), which the node applies from the
//! next epoch (`Input::Registry`). The registered meters' rated capacities
//! travel with it: readings of other meters are refused.
//!
//! The committee region is fixed for the life of the process: a registry
//! change that moves this gateway's committee to another region (its small
//! cell now has four gateways, or lost some) is logged, and takes effect at
//! the next start. Registered locations that are not resolution-12 H3 cells
//! are left out of every committee, with a warning.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use alloy::primitives::Address;
use anyhow::Context as _;
use meshd_chain::{RegistryReader, RegistryView, RetryPolicy, Url};
use meshd_config::Config;
use meshd_node::committee::{committee_regions, region_members};
use meshd_protocol::geo::{Location, Region};
use meshd_protocol::{GatewayId, MeterId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How often the registry's new events are read: 5 s, a few blocks on most
/// chains and well inside an epoch, so a change read in epoch `c` applies
/// from `c + 1` as it does at every other member.
pub const POLL: Duration = Duration::from_secs(5);

/// Updates queued for the loop. Each carries the whole member list, so only
/// the latest matters; 4 absorbs a burst without blocking the poller.
const UPDATES: usize = 4;

/// The committee region's members and the registered meters, after a change
/// of either.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    /// Chain time of the block read, Unix ms.
    pub as_of_ms: u64,
    /// The registered gateways of the committee region, sorted.
    pub members: Vec<GatewayId>,
    /// Every registered meter's rated capacity, W.
    pub meters: BTreeMap<MeterId, u64>,
    /// Every registered gateway with a usable location: what the anchor
    /// book computes every region's committee from.
    pub registered: Vec<(GatewayId, Location)>,
}

/// The registry as read at start.
pub struct ChainRegistry {
    reader: RegistryReader,
    view: RegistryView,
    head: u64,
    resolution: u8,
    /// The committee region.
    pub region: Region,
    /// Its members at start, sorted.
    pub members: Vec<GatewayId>,
    /// The registered meters' rated capacities at start, W.
    pub meters: BTreeMap<MeterId, u64>,
    /// Every registered gateway with a usable location at start.
    pub registered: Vec<(GatewayId, Location)>,
}

/// Reads the registry when the committee comes from the chain
/// (`registry.members` empty, `chain.rpc_url` and `chain.registry_contract`
/// set); `None` otherwise. `own` is this gateway, `home` its configured
/// location: when the registry does not hold it, its committee region is the
/// one its home cell would join.
pub async fn open(config: &Config, own: GatewayId, home: Location) -> anyhow::Result<Option<ChainRegistry>> {
    let chain = &config.chain;
    let (true, Some(rpc), Some(registry)) =
        (config.registry.members.is_empty(), &chain.rpc_url, &chain.registry_contract)
    else {
        return Ok(None);
    };
    let url = Url::from_str(rpc).with_context(|| format!("`chain.rpc_url` = {rpc:?}"))?;
    let address =
        Address::from_str(registry).with_context(|| format!("`chain.registry_contract` = {registry:?}"))?;
    let reader = RegistryReader::new(url, address, RetryPolicy::default());
    let (view, head) = reader
        .snapshot(chain.from_block)
        .await
        .with_context(|| format!("cannot read the gateway registry {registry} at {rpc}"))?;
    let resolution = config.network.region_resolution;
    let registered = locations(&view, true);
    let mut with_own = registered.clone();
    if !view.gateways.contains_key(&own) {
        tracing::warn!(gateway = %own, "this gateway is not in the registry: it follows its region without voting");
        with_own.push((own, home));
    }
    let regions = committee_regions(resolution, &with_own);
    let region = regions
        .get(&own)
        .copied()
        .ok_or_else(|| anyhow::anyhow!("the gateway's location has no region at resolution {resolution}"))?;
    let members = region_members(region, resolution, &registered);
    if members.is_empty() {
        anyhow::bail!(
            "no registered gateway in this gateway's committee region {:x} (registry {registry}, {} gateways): \
             register the region's gateways with `meshd chain register`",
            region.0,
            view.gateways.len()
        );
    }
    let meters = capacities(&view);
    Ok(Some(ChainRegistry { reader, view, head, resolution, region, members, meters, registered }))
}

impl ChainRegistry {
    /// Starts following the registry: the returned receiver yields an
    /// [`Update`] whenever the committee region's members change. The task
    /// ends with `stop` or when the receiver is dropped.
    pub fn follow(self, own: GatewayId, stop: CancellationToken) -> mpsc::Receiver<Update> {
        let (tx, rx) = mpsc::channel(UPDATES);
        tokio::spawn(self.run(own, tx, stop));
        rx
    }

    async fn run(mut self, own: GatewayId, updates: mpsc::Sender<Update>, stop: CancellationToken) {
        let mut members = self.members.clone();
        let mut meters = self.meters.clone();
        let mut all = self.registered.clone();
        let mut moved_warned = false;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(POLL) => {}
            }
            let (head, timestamp_s) = match self.reader.head().await {
                Ok(head) => head,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the chain's head; the committee stays as it is");
                    continue;
                }
            };
            if head <= self.head {
                continue;
            }
            match self.reader.events(self.head + 1, head).await {
                Ok(events) => {
                    for event in &events {
                        self.view.apply(event);
                    }
                    self.head = head;
                    // Most polls read blocks without registry changes: the
                    // committees need no recomputing then.
                    if events.is_empty() {
                        continue;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot read the registry's events; retrying");
                    continue;
                }
            }
            let registered = locations(&self.view, false);
            let now = region_members(self.region, self.resolution, &registered);
            if !moved_warned && self.view.gateways.contains_key(&own) && !now.contains(&own) {
                moved_warned = true;
                tracing::warn!(
                    region = %format!("{:x}", self.region.0),
                    "the registry moved this gateway's committee to another region; restart to join it"
                );
            }
            let now_meters = capacities(&self.view);
            if now == members && now_meters == meters && registered == all {
                continue;
            }
            if now != members {
                tracing::info!(
                    before = members.len(),
                    after = now.len(),
                    block = head,
                    "the committee's registry changed"
                );
            }
            members = now.clone();
            meters = now_meters.clone();
            all = registered.clone();
            let update = Update {
                as_of_ms: timestamp_s.saturating_mul(1000),
                members: now,
                meters: now_meters,
                registered,
            };
            if updates.send(update).await.is_err() {
                return;
            }
        }
    }
}

/// Every registered meter's rated capacity, W.
fn capacities(view: &RegistryView) -> BTreeMap<MeterId, u64> {
    view.meters.iter().map(|(id, meter)| (*id, meter.rated_watts)).collect()
}

/// The registered gateways with a usable location; unusable ones are warned
/// about when `warn` (at start).
fn locations(view: &RegistryView, warn: bool) -> Vec<(GatewayId, Location)> {
    let mut usable = Vec::with_capacity(view.gateways.len());
    for (id, gateway) in &view.gateways {
        match Location::check(gateway.location) {
            Ok(at) => usable.push((*id, at)),
            Err(error) if warn => {
                tracing::warn!(gateway = %id, location = %format!("{:x}", gateway.location), %error,
                    "registered location is not a resolution-12 H3 cell: left out of every committee");
            }
            Err(_) => {}
        }
    }
    usable
}
