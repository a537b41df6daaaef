//! From the configuration file to the node's configuration: location,
//! region, committee, epoch schedule and anchor domain.

use std::str::FromStr;

use meshd_config::Config;
use meshd_node::pool::Limits;
use meshd_node::{Radio, Timeouts};
use meshd_protocol::GatewayId;
use meshd_protocol::anchor::AnchorDomain;
use meshd_protocol::epoch::EpochClock;
use meshd_protocol::geo::{Location, Region};
use meshd_protocol::keys::EvmAddress;
use meshd_protocol::message::DataRate;
use meshd_protocol::reward::RewardParams;
use meshd_protocol::rules::{meter, witness};

/// Why the configuration cannot run a gateway.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// The gateway has no location.
    #[error(
        "the gateway's location is not set: beacons and witness reports carry it; fix: set \
         `gateway.lat_deg` and `gateway.lon_deg`, or `gateway.h3_cell`"
    )]
    NoLocation,
    /// The location or region could not be computed.
    #[error("the gateway's location is not usable: {0}")]
    Location(String),
    /// Nobody sits on the committee.
    #[error(
        "no committee: `registry.members` is empty and no chain registry is configured; fix: list \
         the gateway ids of this gateway's committee (this one's: {own}) in `registry.members`, or \
         set `chain.rpc_url` and `chain.registry_contract` to read it from the chain"
    )]
    NoRegistry {
        /// This gateway's id, to paste into the list.
        own: GatewayId,
    },
    /// The epoch schedule is not usable.
    #[error("the epoch schedule is not usable: {0}")]
    Clock(String),
}

/// What the daemon derives from its configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The node's configuration.
    pub node: meshd_node::Config,
    /// The registered gateways of the committee region; empty when they
    /// are read from the chain ([`super::chain_registry`]).
    pub members: Vec<GatewayId>,
    /// The gateway's asserted location.
    pub location: Location,
}

/// Derives the node's settings for the gateway `own`.
///
/// The committee is `registry.members`: a fixed committee of a private or
/// development network, whose region is this gateway's region at
/// `network.region_resolution` (every member must be in it). With no list
/// and a chain registry configured, `members` is empty and the region is the
/// home cell; [`super::chain_registry`] supplies both. The anchor
/// domain is `chain.chain_id` and `chain.anchor_contract`; without a contract
/// nothing is anchored.
pub fn settings(config: &Config, own: GatewayId) -> Result<Settings, SettingsError> {
    let location = location(config)?;
    let region = Region::of(location, config.network.region_resolution)
        .map_err(|e| SettingsError::Location(e.to_string()))?;
    // Validation parsed every member already; a failure here is a bug upstream.
    let members: Vec<GatewayId> =
        config.registry.members.iter().filter_map(|m| GatewayId::from_str(m).ok()).collect();
    let from_chain = config.chain.rpc_url.is_some() && config.chain.registry_contract.is_some();
    if members.is_empty() && !from_chain {
        return Err(SettingsError::NoRegistry { own });
    }
    let network = &config.network;
    let clock = EpochClock::new(
        network.genesis_unix_s.saturating_mul(1000),
        network.epoch_length_s.saturating_mul(1000),
        network.grace_period_s.saturating_mul(1000),
    )
    .map_err(|e| SettingsError::Clock(e.to_string()))?;
    let anchor_contract = config.chain.anchor_contract.as_deref().and_then(parse_address);
    let node = meshd_node::Config {
        network: network.name.clone(),
        region,
        clock,
        first_epoch: network.first_epoch,
        timeouts: Timeouts::default(),
        limits: Limits::default(),
        witness: witness::Params::default(),
        rewards: RewardParams::default(),
        radio: Radio {
            location,
            antenna_gain_ddbi: (config.gateway.antenna_gain_dbi * 10.0).round() as i16,
            // Beacons as `[radio]` transmits them (the synthetic source
            // "transmits" the same).
            tx_power_ddbm: i16::from(config.radio.beacon_power_dbm) * 10,
            frequency_hz: config.radio.beacon_frequency_hz,
            datarate: DataRate {
                spreading_factor: config.radio.beacon_spreading_factor,
                bandwidth_khz: config.radio.beacon_bandwidth_khz,
            },
        },
        // The node's own anchor output covers its region only; the daemon's
        // anchor book signs each range over every region (gateway.rs).
        anchor_every: 0,
        anchor_domain: AnchorDomain {
            chain_id: config.chain.chain_id,
            verifying_contract: anchor_contract.unwrap_or(EvmAddress([0; 20])),
        },
        meter: meter::Params::default(),
        stall_rounds: 4,
    };
    Ok(Settings { node, members, location })
}

fn location(config: &Config) -> Result<Location, SettingsError> {
    let gateway = &config.gateway;
    match (gateway.lat_deg, gateway.lon_deg, &gateway.h3_cell) {
        (Some(lat), Some(lon), None) => {
            Location::from_lat_lng(lat, lon).map_err(|e| SettingsError::Location(e.to_string()))
        }
        (None, None, Some(cell)) => u64::from_str_radix(cell, 16)
            .map_err(|e| SettingsError::Location(format!("gateway.h3_cell {cell:?}: {e}")))
            .and_then(|index| Location::check(index).map_err(|e| SettingsError::Location(e.to_string()))),
        _ => Err(SettingsError::NoLocation),
    }
}

/// `0x` and 40 hex digits (validated by the config) as an address.
fn parse_address(text: &str) -> Option<EvmAddress> {
    let bytes = hex::decode(text.strip_prefix("0x")?).ok()?;
    Some(EvmAddress(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use meshd_protocol::keys::Keypair;

    use super::*;

    fn config() -> (Config, GatewayId) {
        let own = Keypair::from_secret([7; 32]).gateway_id();
        let mut config = Config::default();
        config.gateway.lat_deg = Some(52.52);
        config.gateway.lon_deg = Some(13.40);
        config.registry.members = vec![own.to_string()];
        (config, own)
    }

    #[test]
    fn a_located_gateway_with_a_committee_gets_node_settings() {
        let (mut config, own) = config();
        let settings = settings(&config, own).expect("settings");
        assert_eq!(settings.members, vec![own]);
        assert_eq!(settings.node.anchor_every, 0, "the anchor book anchors, not the node");
        assert_eq!(settings.node.radio.antenna_gain_ddbi, 20);
        assert_eq!(settings.node.region.resolution().ok(), Some(4));
        config.chain.anchor_contract = Some("0x5FbDB2315678afecb367f032d93F642f64180aa3".into());
        let settings = super::settings(&config, own).expect("settings");
        assert_eq!(settings.node.anchor_every, 0);
        assert_eq!(settings.node.anchor_domain.verifying_contract.0[0], 0x5f);
    }

    #[test]
    fn missing_location_or_committee_is_explained() {
        let (mut config, own) = config();
        config.registry.members.clear();
        let err = settings(&config, own).expect_err("no committee").to_string();
        assert!(err.contains("registry.members") && err.contains(&own.to_string()), "{err}");
        let (mut config, own) = self::config();
        config.gateway.lat_deg = None;
        config.gateway.lon_deg = None;
        assert!(matches!(settings(&config, own), Err(SettingsError::NoLocation)));
    }
}
