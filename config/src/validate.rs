//! The rules a configuration must follow beyond its types.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use meshd_protocol::GatewayId;
use meshd_protocol::geo::{Location, LocationError, Region};

use crate::Config;

/// Shortest epoch: a committee needs several gossip round trips (about a
/// second each across the internet) and a grace period to decide an epoch.
pub const MIN_EPOCH_LENGTH_S: u64 = 10;

/// Longest epoch: one week; longer would hold rewards and meter energy back
/// for more than a week.
pub const MAX_EPOCH_LENGTH_S: u64 = 7 * 24 * 3600;

/// Latest genesis: 9999-12-31T23:59:59Z. A larger value is a Unix time in
/// milliseconds or microseconds where seconds are expected.
pub const MAX_GENESIS_UNIX_S: u64 = 253_402_300_799;

/// Longest time between anchors: 31 days, so that every summary can be proved
/// on chain within about a month.
pub const MAX_ANCHOR_INTERVAL_S: u64 = 31 * 24 * 3600;

/// Antenna gains accepted, in dBi: no LoRa antenna an operator mounts is
/// outside this range; values beyond are typos or a unit mix-up.
pub const ANTENNA_GAIN_RANGE_DBI: std::ops::RangeInclusive<f64> = -10.0..=20.0;

/// Longest network name. The name is in the signing domain (which holds up
/// to [`meshd_protocol::Domain::MAX_NETWORK_LEN`] bytes) and in every gossip topic name and
/// protocol id, which stay readable and below multistream-select's 140-byte
/// protocol limit with names up to this length.
pub const MAX_NETWORK_NAME_LEN: usize = 64;

/// Levels of `log.level` directives, as `tracing`'s `RUST_LOG` syntax has them.
const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// A rule the configuration breaks. Each message names the key (as a dotted
/// path such as `network.epoch_length_s`), the value and the fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// `network.name` is empty.
    #[error(
        "`network.name` is empty; fix: set the name of the network to join, e.g. name = \"meshd-devnet\""
    )]
    NetworkNameEmpty,
    /// `network.name` is longer than the signing domain holds.
    #[error(
        "`network.name` is {len} bytes long; topic names and protocol ids hold names of at most \
         {MAX_NETWORK_NAME_LEN} bytes; fix: use a shorter name"
    )]
    NetworkNameTooLong {
        /// The name's length in bytes.
        len: usize,
    },
    /// `network.name` has a character outside the allowed set.
    #[error(
        "`network.name` = {name:?} contains {character:?}; the name is part of gossip topic names and \
         protocol ids; fix: use only lowercase ASCII letters, digits and '-'"
    )]
    NetworkNameCharacter {
        /// The name.
        name: String,
        /// The first character not allowed.
        character: char,
    },
    /// `network.genesis_unix_s` is beyond the year 9999.
    #[error(
        "`network.genesis_unix_s` = {value} is after the year 9999; fix: give the Unix time of epoch 0 in \
         seconds, not milliseconds (e.g. 1767225600 for 2026-01-01T00:00:00Z)"
    )]
    GenesisTooLate {
        /// The value found.
        value: u64,
    },
    /// `network.epoch_length_s` is out of range.
    #[error(
        "`network.epoch_length_s` = {value} is outside {MIN_EPOCH_LENGTH_S}..={MAX_EPOCH_LENGTH_S} seconds; \
         fix: set an epoch length in that range, e.g. 3600 (one hour)"
    )]
    EpochLength {
        /// The value found.
        value: u64,
    },
    /// The grace period is not shorter than the epoch.
    #[error(
        "`network.grace_period_s` = {grace} is not shorter than `network.epoch_length_s` = {epoch}; an \
         epoch must be decided before the next one ends; fix: set a grace period below {epoch} seconds, \
         e.g. {suggested}",
        suggested = epoch / 12
    )]
    GraceNotBelowEpoch {
        /// The grace period in seconds.
        grace: u64,
        /// The epoch length in seconds.
        epoch: u64,
    },
    /// `network.region_resolution` is outside the region resolutions.
    #[error(
        "`network.region_resolution` = {value} is outside {min}..={max}: coarser regions make every \
         gateway carry a whole country's gossip, finer ones rarely hold a committee; fix: set a \
         resolution from {min} to {max}, e.g. 4",
        min = Region::MIN_RESOLUTION,
        max = Region::MAX_RESOLUTION
    )]
    RegionResolution {
        /// The value found.
        value: u8,
    },
    /// `network.anchor_every_epochs` is zero.
    #[error("`network.anchor_every_epochs` = 0; fix: anchor every 1 or more epochs, e.g. 24")]
    AnchorEveryZero,
    /// The time between anchors is too long.
    #[error(
        "`network.anchor_every_epochs` = {every} with `network.epoch_length_s` = {epoch} anchors only every \
         {every} × {epoch} s, more than 31 days; fix: set anchor_every_epochs to at most {max}",
        max = MAX_ANCHOR_INTERVAL_S / epoch
    )]
    AnchorIntervalTooLong {
        /// Epochs between anchors.
        every: u64,
        /// The epoch length in seconds.
        epoch: u64,
    },
    /// A path is empty.
    #[error("`{key}` is empty; fix: set a path, e.g. {key_default}", key_default = default_path(key))]
    EmptyPath {
        /// The key: `identity.key_file` or `storage.path`.
        key: &'static str,
    },
    /// The key file lies inside the data directory.
    #[error(
        "`identity.key_file` = {key_file:?} lies inside `storage.path` = {storage:?}; the data directory \
         is copied for backups and deleted to resync, and the secret key must not go with it; fix: keep \
         the key file elsewhere, e.g. /var/lib/meshd/keys/gateway.key"
    )]
    KeyFileInsideStorage {
        /// The key file.
        key_file: PathBuf,
        /// The data directory.
        storage: PathBuf,
    },
    /// `p2p.listen` is empty.
    #[error(
        "`p2p.listen` is empty: no peer could connect to this gateway; fix: listen on at least one address, \
         e.g. listen = [\"/ip4/0.0.0.0/tcp/4170\"]"
    )]
    NoListenAddress,
    /// A listen or bootstrap address is not a multiaddr.
    #[error(
        "`{key}` = {value:?} is not a multiaddr; fix: write it as /<protocol>/<value>/…, \
         e.g. /ip4/0.0.0.0/tcp/4170 or /dns4/example.org/udp/4170/quic-v1"
    )]
    NotAMultiaddr {
        /// The key and index, e.g. `p2p.listen[0]`.
        key: String,
        /// The value found.
        value: String,
    },
    /// A bootstrap address does not end in the peer's id.
    #[error(
        "`{key}` = {value:?} does not end in /p2p/<gateway id>; a peer is only trusted by its id; fix: \
         append the peer's id as printed by `meshd keys show`, e.g. /ip4/192.0.2.1/tcp/4170/p2p/12D3KooW…"
    )]
    BootstrapWithoutPeerId {
        /// The key and index, e.g. `p2p.bootstrap[0]`.
        key: String,
        /// The value found.
        value: String,
    },
    /// A connection limit is zero.
    #[error("`{key}` = 0 would refuse every connection; fix: set at least 1 (default {default})")]
    ZeroLimit {
        /// The key.
        key: &'static str,
        /// The key's default.
        default: u32,
    },
    /// The per-peer limit exceeds the total.
    #[error(
        "`p2p.max_connections_per_peer` = {per_peer} is above `p2p.max_connections` = {total}; fix: set it \
         to at most {total}, e.g. 3"
    )]
    PerPeerAboveTotal {
        /// Limit per peer.
        per_peer: u32,
        /// Limit in total.
        total: u32,
    },
    /// The API listens on port 0 (a random port).
    #[error(
        "`api.listen` = {value} has port 0, which picks a random port no client can find; fix: set a \
         port, e.g. 127.0.0.1:4180"
    )]
    ApiPortZero {
        /// The value found.
        value: SocketAddr,
    },
    /// A latitude outside -90..=90 degrees.
    #[error(
        "`gateway.lat_deg` = {value} is outside -90..=90 degrees; fix: give the WGS84 latitude, e.g. 52.5163"
    )]
    Latitude {
        /// The value found.
        value: f64,
    },
    /// A longitude outside -180..=180 degrees.
    #[error(
        "`gateway.lon_deg` = {value} is outside -180..=180 degrees; fix: give the WGS84 longitude, e.g. 13.3777"
    )]
    Longitude {
        /// The value found.
        value: f64,
    },
    /// Only one of latitude and longitude is set.
    #[error("`{given}` is set but `{missing}` is not; fix: set both, or neither")]
    HalfALocation {
        /// The key that is set.
        given: &'static str,
        /// The key that is missing.
        missing: &'static str,
    },
    /// Both a latitude/longitude and an H3 cell are set.
    #[error(
        "`gateway.h3_cell` and `gateway.lat_deg`/`gateway.lon_deg` are both set; fix: give the location \
         one way only"
    )]
    TwoLocations,
    /// `gateway.h3_cell` is not an H3 cell index.
    #[error(
        "`gateway.h3_cell` = {value:?} is not an H3 cell index; fix: write the cell as 15 hex digits, \
         e.g. \"8c1f1d4886017ff\", or give lat_deg and lon_deg instead"
    )]
    H3Cell {
        /// The value found.
        value: String,
    },
    /// `gateway.h3_cell` is not at the resolution of asserted locations.
    #[error(
        "`gateway.h3_cell` = {value:?} has resolution {resolution}; locations are asserted at resolution \
         {location}; fix: give the resolution-{location} cell of the antenna, or lat_deg and lon_deg",
        location = Location::RESOLUTION
    )]
    H3CellResolution {
        /// The value found.
        value: String,
        /// Its resolution.
        resolution: u8,
    },
    /// The antenna gain is out of range.
    #[error(
        "`gateway.antenna_gain_dbi` = {value} is outside -10..=20 dBi; fix: give the antenna's gain in dBi \
         from its data sheet, e.g. 2.0"
    )]
    AntennaGain {
        /// The value found.
        value: f64,
    },
    /// A registry member is not a gateway id.
    #[error(
        "`{key}` = {value:?} is not a gateway id; fix: give the id printed by `meshd keys show`, \
         e.g. \"12D3KooW…\""
    )]
    RegistryMember {
        /// The key and index, e.g. `registry.members[0]`.
        key: String,
        /// The value found.
        value: String,
    },
    /// The same gateway is listed twice in the registry.
    #[error("`{key}` = {value:?} is listed twice; fix: list each gateway once")]
    RegistryDuplicate {
        /// The key and index of the second listing.
        key: String,
        /// The value found.
        value: String,
    },
    /// `chain.rpc_url` is not an http(s) or ws(s) URL.
    #[error(
        "`chain.rpc_url` = {value:?} is not an http://, https://, ws:// or wss:// URL; fix: give the \
         JSON-RPC endpoint of an EVM node, e.g. \"http://127.0.0.1:8545\""
    )]
    RpcUrl {
        /// The value found.
        value: String,
    },
    /// A contract address is not 0x and 40 hex digits.
    #[error(
        "`{key}` = {value:?} is not an EVM address; fix: write it as 0x and 40 hex digits, as printed \
         by `meshd chain deploy`"
    )]
    ContractAddress {
        /// The key.
        key: &'static str,
        /// The value found.
        value: String,
    },
    /// A synthetic-source setting is out of range.
    #[error("`{key}` = {value} is outside {min}..={max}; fix: {fix}")]
    SyntheticRange {
        /// The key.
        key: &'static str,
        /// The value found.
        value: u64,
        /// Smallest accepted.
        min: u64,
        /// Largest accepted.
        max: u64,
        /// What to do.
        fix: &'static str,
    },
    /// A radio or meter setting is invalid.
    #[error("`{key}` = {value}: {fix}")]
    Ingest {
        /// The key (and index for lists).
        key: String,
        /// The value found, as written in TOML.
        value: String,
        /// What is wrong and what to do.
        fix: &'static str,
    },
    /// `log.level` is not a level or list of directives.
    #[error(
        "`log.level` = {value:?}: {directive:?} is not a level or target=level; fix: use one of off, error, \
         warn, info, debug, trace, or directives like \"info,meshd_gossip=debug\""
    )]
    LogLevel {
        /// The value found.
        value: String,
        /// The first directive not understood.
        directive: String,
    },
}

fn default_path(key: &str) -> String {
    let default = Config::default();
    let path = if key == "identity.key_file" { default.identity.key_file } else { default.storage.path };
    path.display().to_string()
}

impl ValidationError {
    /// The dotted key the error is about (the first one, for cross-field rules).
    pub fn key(&self) -> String {
        use ValidationError::*;
        match self {
            NetworkNameEmpty | NetworkNameTooLong { .. } | NetworkNameCharacter { .. } => {
                "network.name".into()
            }
            GenesisTooLate { .. } => "network.genesis_unix_s".into(),
            EpochLength { .. } => "network.epoch_length_s".into(),
            GraceNotBelowEpoch { .. } => "network.grace_period_s".into(),
            RegionResolution { .. } => "network.region_resolution".into(),
            AnchorEveryZero | AnchorIntervalTooLong { .. } => "network.anchor_every_epochs".into(),
            EmptyPath { key } | ZeroLimit { key, .. } => (*key).into(),
            KeyFileInsideStorage { .. } => "identity.key_file".into(),
            NoListenAddress => "p2p.listen".into(),
            NotAMultiaddr { key, .. } | BootstrapWithoutPeerId { key, .. } => key.clone(),
            PerPeerAboveTotal { .. } => "p2p.max_connections_per_peer".into(),
            ApiPortZero { .. } => "api.listen".into(),
            Latitude { .. } => "gateway.lat_deg".into(),
            Longitude { .. } => "gateway.lon_deg".into(),
            HalfALocation { given, .. } => (*given).into(),
            TwoLocations | H3Cell { .. } | H3CellResolution { .. } => "gateway.h3_cell".into(),
            AntennaGain { .. } => "gateway.antenna_gain_dbi".into(),
            RegistryMember { key, .. } | RegistryDuplicate { key, .. } => key.clone(),
            RpcUrl { .. } => "chain.rpc_url".into(),
            ContractAddress { key, .. } | SyntheticRange { key, .. } => (*key).into(),
            LogLevel { .. } => "log.level".into(),
            Ingest { key, .. } => key.clone(),
        }
    }
}

impl Config {
    /// Checks every rule and returns the first broken one, in file order.
    pub fn validate(&self) -> Result<(), ValidationError> {
        match self.problems().into_iter().next() {
            Some(problem) => Err(problem),
            None => Ok(()),
        }
    }

    /// Every broken rule, in file order: `meshd config check` shows them all
    /// so an operator fixes a file in one pass.
    pub fn problems(&self) -> Vec<ValidationError> {
        let mut problems = Vec::new();
        self.check_network(&mut problems);
        self.check_paths(&mut problems);
        self.check_p2p(&mut problems);
        if self.api.listen.port() == 0 {
            problems.push(ValidationError::ApiPortZero { value: self.api.listen });
        }
        self.check_gateway(&mut problems);
        self.check_registry_and_chain(&mut problems);
        self.check_synthetic(&mut problems);
        self.check_radio_and_meters(&mut problems);
        if let Some(directive) = bad_log_directive(&self.log.level) {
            problems.push(ValidationError::LogLevel { value: self.log.level.clone(), directive });
        }
        problems
    }

    fn check_network(&self, problems: &mut Vec<ValidationError>) {
        let network = &self.network;
        if network.name.is_empty() {
            problems.push(ValidationError::NetworkNameEmpty);
        } else if network.name.len() > MAX_NETWORK_NAME_LEN {
            problems.push(ValidationError::NetworkNameTooLong { len: network.name.len() });
        } else if let Some(character) =
            network.name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            problems.push(ValidationError::NetworkNameCharacter { name: network.name.clone(), character });
        }
        if network.genesis_unix_s > MAX_GENESIS_UNIX_S {
            problems.push(ValidationError::GenesisTooLate { value: network.genesis_unix_s });
        }
        let epoch = network.epoch_length_s;
        let epoch_ok = (MIN_EPOCH_LENGTH_S..=MAX_EPOCH_LENGTH_S).contains(&epoch);
        if !epoch_ok {
            problems.push(ValidationError::EpochLength { value: epoch });
        }
        if epoch_ok && network.grace_period_s >= epoch {
            problems.push(ValidationError::GraceNotBelowEpoch { grace: network.grace_period_s, epoch });
        }
        if !(Region::MIN_RESOLUTION..=Region::MAX_RESOLUTION).contains(&network.region_resolution) {
            problems.push(ValidationError::RegionResolution { value: network.region_resolution });
        }
        let every = network.anchor_every_epochs;
        if every == 0 {
            problems.push(ValidationError::AnchorEveryZero);
        } else if epoch_ok && every.checked_mul(epoch).is_none_or(|interval| interval > MAX_ANCHOR_INTERVAL_S)
        {
            problems.push(ValidationError::AnchorIntervalTooLong { every, epoch });
        }
    }

    fn check_paths(&self, problems: &mut Vec<ValidationError>) {
        let key_file = &self.identity.key_file;
        let storage = &self.storage.path;
        if key_file.as_os_str().is_empty() {
            problems.push(ValidationError::EmptyPath { key: "identity.key_file" });
        }
        if storage.as_os_str().is_empty() {
            problems.push(ValidationError::EmptyPath { key: "storage.path" });
        }
        if !key_file.as_os_str().is_empty()
            && !storage.as_os_str().is_empty()
            && key_file.starts_with(storage)
        {
            problems.push(ValidationError::KeyFileInsideStorage {
                key_file: key_file.clone(),
                storage: storage.clone(),
            });
        }
    }

    fn check_p2p(&self, problems: &mut Vec<ValidationError>) {
        let p2p = &self.p2p;
        if p2p.listen.is_empty() {
            problems.push(ValidationError::NoListenAddress);
        }
        for (index, value) in p2p.listen.iter().enumerate() {
            if !looks_like_multiaddr(value) {
                let key = format!("p2p.listen[{index}]");
                problems.push(ValidationError::NotAMultiaddr { key, value: value.clone() });
            }
        }
        for (index, value) in p2p.bootstrap.iter().enumerate() {
            let key = format!("p2p.bootstrap[{index}]");
            if !looks_like_multiaddr(value) {
                problems.push(ValidationError::NotAMultiaddr { key, value: value.clone() });
            } else if !ends_in_peer_id(value) {
                problems.push(ValidationError::BootstrapWithoutPeerId { key, value: value.clone() });
            }
        }
        let defaults = crate::P2p::default();
        for (key, value, default) in [
            ("p2p.max_connections", p2p.max_connections, defaults.max_connections),
            ("p2p.max_connections_per_peer", p2p.max_connections_per_peer, defaults.max_connections_per_peer),
            ("p2p.max_pending_incoming", p2p.max_pending_incoming, defaults.max_pending_incoming),
            ("p2p.max_pending_outgoing", p2p.max_pending_outgoing, defaults.max_pending_outgoing),
        ] {
            if value == 0 {
                problems.push(ValidationError::ZeroLimit { key, default });
            }
        }
        if p2p.max_connections_per_peer > p2p.max_connections && p2p.max_connections > 0 {
            problems.push(ValidationError::PerPeerAboveTotal {
                per_peer: p2p.max_connections_per_peer,
                total: p2p.max_connections,
            });
        }
    }

    fn check_gateway(&self, problems: &mut Vec<ValidationError>) {
        let gateway = &self.gateway;
        if let Some(value) = gateway.lat_deg.filter(|v| !(-90.0..=90.0).contains(v)) {
            problems.push(ValidationError::Latitude { value });
        }
        if let Some(value) = gateway.lon_deg.filter(|v| !(-180.0..=180.0).contains(v)) {
            problems.push(ValidationError::Longitude { value });
        }
        match (gateway.lat_deg, gateway.lon_deg) {
            (Some(_), None) => problems.push(ValidationError::HalfALocation {
                given: "gateway.lat_deg",
                missing: "gateway.lon_deg",
            }),
            (None, Some(_)) => problems.push(ValidationError::HalfALocation {
                given: "gateway.lon_deg",
                missing: "gateway.lat_deg",
            }),
            _ => {}
        }
        if let Some(cell) = &gateway.h3_cell {
            if gateway.lat_deg.is_some() || gateway.lon_deg.is_some() {
                problems.push(ValidationError::TwoLocations);
            }
            let value = || cell.clone();
            match u64::from_str_radix(cell, 16).map(Location::check) {
                Ok(Ok(_)) => {}
                Ok(Err(LocationError::WrongResolution { found, .. })) => {
                    problems.push(ValidationError::H3CellResolution { value: value(), resolution: found })
                }
                Ok(Err(_)) | Err(_) => problems.push(ValidationError::H3Cell { value: value() }),
            }
        }
        if !ANTENNA_GAIN_RANGE_DBI.contains(&gateway.antenna_gain_dbi) {
            problems.push(ValidationError::AntennaGain { value: gateway.antenna_gain_dbi });
        }
    }
}

impl Config {
    fn check_registry_and_chain(&self, problems: &mut Vec<ValidationError>) {
        let mut seen = std::collections::BTreeSet::new();
        for (index, value) in self.registry.members.iter().enumerate() {
            let key = format!("registry.members[{index}]");
            match GatewayId::from_str(value) {
                Err(_) => problems.push(ValidationError::RegistryMember { key, value: value.clone() }),
                Ok(id) if !seen.insert(id) => {
                    problems.push(ValidationError::RegistryDuplicate { key, value: value.clone() })
                }
                Ok(_) => {}
            }
        }
        if let Some(url) = &self.chain.rpc_url {
            let scheme_ok = ["http://", "https://", "ws://", "wss://"]
                .iter()
                .any(|scheme| url.strip_prefix(scheme).is_some_and(|rest| !rest.is_empty()));
            if !scheme_ok || url.chars().any(char::is_whitespace) {
                problems.push(ValidationError::RpcUrl { value: url.clone() });
            }
        }
        for (key, value) in [
            ("chain.anchor_contract", &self.chain.anchor_contract),
            ("chain.registry_contract", &self.chain.registry_contract),
        ] {
            if let Some(value) = value.as_ref().filter(|v| !is_evm_address(v)) {
                problems.push(ValidationError::ContractAddress { key, value: value.clone() });
            }
        }
    }

    fn check_synthetic(&self, problems: &mut Vec<ValidationError>) {
        let synthetic = &self.synthetic;
        if u64::from(synthetic.meters) > MAX_SYNTHETIC_METERS {
            problems.push(ValidationError::SyntheticRange {
                key: "synthetic.meters",
                value: synthetic.meters.into(),
                min: 0,
                max: MAX_SYNTHETIC_METERS,
                fix: "attach at most 64 synthetic meters",
            });
        }
        if !(1..=MAX_SYNTHETIC_PEAK_W).contains(&synthetic.meter_peak_w) {
            problems.push(ValidationError::SyntheticRange {
                key: "synthetic.meter_peak_w",
                value: synthetic.meter_peak_w,
                min: 1,
                max: MAX_SYNTHETIC_PEAK_W,
                fix: "give a peak power in watts, e.g. 5000",
            });
        }
    }
}

impl Config {
    fn check_radio_and_meters(&self, problems: &mut Vec<ValidationError>) {
        let radio = &self.radio;
        let mut bad = |key: String, value: String, fix: &'static str| {
            problems.push(ValidationError::Ingest { key, value, fix })
        };
        if radio.semtech_listen.is_some_and(|addr| addr.port() == 0) {
            bad(
                "radio.semtech_listen".into(),
                format!("{:?}", radio.semtech_listen.map(|a| a.to_string()).unwrap_or_default()),
                "port 0 is not a fixed port; fix: give the port the packet forwarder sends to, e.g. 1700",
            );
        }
        for (key, url) in [("radio.mqtt_url", &radio.mqtt_url), ("meters.mqtt_url", &self.meters.mqtt_url)] {
            if let Some(url) = url.as_ref().filter(|url| !is_mqtt_url(url)) {
                bad(
                    key.into(),
                    format!("{url:?}"),
                    "not an MQTT broker URL; fix: write it as mqtt://host:port, e.g. \"mqtt://127.0.0.1:1883\"",
                );
            }
        }
        for (key, topic) in [
            ("radio.mqtt_topic_prefix", &radio.mqtt_topic_prefix),
            ("meters.mqtt_topic", &self.meters.mqtt_topic),
        ] {
            if !is_mqtt_topic(topic) {
                bad(
                    key.into(),
                    format!("{topic:?}"),
                    "not an MQTT topic; fix: give a non-empty topic without '+', '#' or a trailing '/'",
                );
            }
        }
        for (index, id) in radio.gateway_ids.iter().enumerate() {
            if !(id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())) {
                bad(
                    format!("radio.gateway_ids[{index}]"),
                    format!("{id:?}"),
                    "not a gateway EUI-64; fix: write it as 16 hex digits, e.g. \"0016c001ff10a235\"",
                );
            }
        }
        if radio.mqtt_url.is_some() && radio.gateway_ids.is_empty() {
            bad(
                "radio.gateway_ids".into(),
                "[]".into(),
                "`radio.mqtt_url` is set but no gateway is named; fix: list the concentrators' gateway ids",
            );
        }
        if !(137_000_000..=1_020_000_000).contains(&radio.beacon_frequency_hz) {
            bad(
                "radio.beacon_frequency_hz".into(),
                radio.beacon_frequency_hz.to_string(),
                "outside the LoRa bands; fix: give a frequency in Hz, e.g. 869525000",
            );
        }
        if !(7..=12).contains(&radio.beacon_spreading_factor) {
            bad(
                "radio.beacon_spreading_factor".into(),
                radio.beacon_spreading_factor.to_string(),
                "outside 7..=12; fix: give a LoRa spreading factor, e.g. 9",
            );
        }
        if ![125, 250, 500].contains(&radio.beacon_bandwidth_khz) {
            bad(
                "radio.beacon_bandwidth_khz".into(),
                radio.beacon_bandwidth_khz.to_string(),
                "not a LoRa bandwidth; fix: give 125, 250 or 500",
            );
        }
        if radio.beacon_power_dbm > MAX_BEACON_POWER_DBM {
            bad(
                "radio.beacon_power_dbm".into(),
                radio.beacon_power_dbm.to_string(),
                "above 30 dBm; fix: give the power allowed on the beacon frequency, e.g. 14",
            );
        }
    }
}

/// Highest beacon power, 30 dBm (1 W): the ceiling of US915 and of the
/// LoRa concentrators' amplifiers; a larger value is a unit mix-up.
pub const MAX_BEACON_POWER_DBM: u8 = 30;

/// `mqtt://` or `tcp://`, then `host:port` with a non-zero port and nothing else.
fn is_mqtt_url(value: &str) -> bool {
    let Some(rest) = value.strip_prefix("mqtt://").or_else(|| value.strip_prefix("tcp://")) else {
        return false;
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let Some((host, port)) = rest.rsplit_once(':') else { return false };
    !host.is_empty()
        && !host.contains(['/', '@', '?', '#'])
        && !host.chars().any(char::is_whitespace)
        && port.parse::<u16>().is_ok_and(|port| port != 0)
}

/// A topic to publish or subscribe to literally: non-empty, no wildcards, no
/// empty last level.
fn is_mqtt_topic(value: &str) -> bool {
    !value.is_empty() && !value.ends_with('/') && !value.contains(['+', '#', '\0'])
}

/// Most synthetic meters per gateway: enough to show a site with many
/// installations, few enough that their readings stay a small share of a
/// region's reports.
pub const MAX_SYNTHETIC_METERS: u64 = 64;

/// Largest synthetic peak power, 10 MW: a large solar park; beyond that a
/// value is a unit mix-up (W vs mW).
pub const MAX_SYNTHETIC_PEAK_W: u64 = 10_000_000;

/// `0x` followed by exactly 40 hex digits (any case: the EIP-55 checksum is
/// not required in a configuration file).
fn is_evm_address(value: &str) -> bool {
    value.strip_prefix("0x").is_some_and(|hex| hex.len() == 40 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A light check of the multiaddr text form, `/<protocol>/<value>…`: the
/// networking layer parses it fully; this catches the common mistakes (a bare
/// `host:port`, spaces, empty parts) with a message naming the key.
fn looks_like_multiaddr(value: &str) -> bool {
    let Some(rest) = value.strip_prefix('/') else { return false };
    !rest.is_empty()
        && !value.chars().any(char::is_whitespace)
        && rest.split('/').all(|part| !part.is_empty())
}

/// Whether an address ends in `/p2p/<gateway id>`.
fn ends_in_peer_id(value: &str) -> bool {
    value.rsplit_once("/p2p/").is_some_and(|(_, id)| GatewayId::from_str(id).is_ok())
}

/// The first directive of a `RUST_LOG`-style list that is neither a level nor
/// `target=level`.
fn bad_log_directive(level: &str) -> Option<String> {
    let is_level = |text: &str| LOG_LEVELS.iter().any(|l| l.eq_ignore_ascii_case(text.trim()));
    let is_target = |text: &str| {
        let text = text.trim();
        !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-'))
    };
    if level.trim().is_empty() {
        return Some(String::new());
    }
    level
        .split(',')
        .find(|directive| match directive.split_once('=') {
            Some((target, level)) => !(is_target(target) && is_level(level)),
            None => !is_level(directive),
        })
        .map(|directive| directive.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LogFormat;

    fn problems_of(edit: impl FnOnce(&mut Config)) -> Vec<ValidationError> {
        let mut config = Config::default();
        edit(&mut config);
        config.problems()
    }

    #[test]
    fn network_name_rules() {
        assert_eq!(problems_of(|c| c.network.name.clear()), [ValidationError::NetworkNameEmpty]);
        assert_eq!(
            problems_of(|c| c.network.name = "n".repeat(65)),
            [ValidationError::NetworkNameTooLong { len: 65 }]
        );
        assert!(problems_of(|c| c.network.name = "n".repeat(64)).is_empty());
        const { assert!(MAX_NETWORK_NAME_LEN <= meshd_protocol::Domain::MAX_NETWORK_LEN) };
        assert_eq!(
            problems_of(|c| c.network.name = "Meshd".into()),
            [ValidationError::NetworkNameCharacter { name: "Meshd".into(), character: 'M' }]
        );
        assert_eq!(
            problems_of(|c| c.network.name = "my net".into()),
            [ValidationError::NetworkNameCharacter { name: "my net".into(), character: ' ' }]
        );
    }

    #[test]
    fn registry_chain_and_synthetic_rules() {
        let id = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
        assert!(problems_of(|c| c.registry.members = vec![id.into()]).is_empty());
        let found = problems_of(|c| c.registry.members = vec![id.into(), "gw1".into(), id.into()]);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].key(), "registry.members[1]");
        assert_eq!(found[1].key(), "registry.members[2]");
        assert!(problems_of(|c| c.chain.rpc_url = Some("http://127.0.0.1:8545".into())).is_empty());
        for bad in ["127.0.0.1:8545", "http://", "ftp://x", "http://a b"] {
            let found = problems_of(|c| c.chain.rpc_url = Some(bad.into()));
            assert_eq!(found.len(), 1, "{bad}");
            assert_eq!(found[0].key(), "chain.rpc_url");
        }
        let address = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
        assert!(problems_of(|c| c.chain.anchor_contract = Some(address.into())).is_empty());
        let found = problems_of(|c| c.chain.registry_contract = Some(address[..41].into()));
        assert_eq!(found[0].key(), "chain.registry_contract");
        assert_eq!(problems_of(|c| c.synthetic.meters = 65)[0].key(), "synthetic.meters");
        assert_eq!(problems_of(|c| c.synthetic.meter_peak_w = 0)[0].key(), "synthetic.meter_peak_w");
    }

    #[test]
    fn epoch_rules() {
        assert_eq!(
            problems_of(|c| c.network.epoch_length_s = 5),
            [ValidationError::EpochLength { value: 5 }]
        );
        assert_eq!(
            problems_of(|c| c.network.grace_period_s = 3600),
            [ValidationError::GraceNotBelowEpoch { grace: 3600, epoch: 3600 }]
        );
        assert_eq!(
            problems_of(|c| c.network.genesis_unix_s = 1_767_225_600_000),
            [ValidationError::GenesisTooLate { value: 1_767_225_600_000 }]
        );
        for value in [2, 9] {
            assert_eq!(
                problems_of(|c| c.network.region_resolution = value),
                [ValidationError::RegionResolution { value }]
            );
        }
        assert!(problems_of(|c| c.network.region_resolution = 8).is_empty());
    }

    #[test]
    fn anchor_interval_rules() {
        assert_eq!(problems_of(|c| c.network.anchor_every_epochs = 0), [ValidationError::AnchorEveryZero]);
        assert_eq!(
            problems_of(|c| c.network.anchor_every_epochs = 745),
            [ValidationError::AnchorIntervalTooLong { every: 745, epoch: 3600 }]
        );
        assert!(problems_of(|c| c.network.anchor_every_epochs = 744).is_empty());
        let overflow = problems_of(|c| c.network.anchor_every_epochs = u64::MAX);
        assert_eq!(overflow[0].key(), "network.anchor_every_epochs");
    }

    #[test]
    fn path_rules() {
        assert_eq!(
            problems_of(|c| c.storage.path = PathBuf::new()),
            [ValidationError::EmptyPath { key: "storage.path" }]
        );
        let inside = problems_of(|c| c.identity.key_file = "/var/lib/meshd/data/gateway.key".into());
        assert_eq!(inside[0].key(), "identity.key_file");
        assert!(matches!(inside[0], ValidationError::KeyFileInsideStorage { .. }));
        // A sibling whose name merely starts the same is not inside.
        assert!(problems_of(|c| c.identity.key_file = "/var/lib/meshd/data2/k".into()).is_empty());
    }

    #[test]
    fn p2p_rules() {
        assert_eq!(problems_of(|c| c.p2p.listen.clear()), [ValidationError::NoListenAddress]);
        assert_eq!(
            problems_of(|c| c.p2p.listen = vec!["0.0.0.0:4170".into()]),
            [ValidationError::NotAMultiaddr { key: "p2p.listen[0]".into(), value: "0.0.0.0:4170".into() }]
        );
        let id = meshd_protocol::keys::Keypair::from_secret([3; 32]).gateway_id();
        let good = format!("/ip4/192.0.2.1/tcp/4170/p2p/{id}");
        assert!(problems_of(|c| c.p2p.bootstrap = vec![good]).is_empty());
        let problems = problems_of(|c| c.p2p.bootstrap = vec!["/ip4/192.0.2.1/tcp/4170".into()]);
        assert_eq!(problems[0].key(), "p2p.bootstrap[0]");
        assert!(matches!(problems[0], ValidationError::BootstrapWithoutPeerId { .. }));
        assert_eq!(
            problems_of(|c| c.p2p.max_pending_incoming = 0),
            [ValidationError::ZeroLimit { key: "p2p.max_pending_incoming", default: 32 }]
        );
        assert_eq!(
            problems_of(|c| c.p2p.max_connections_per_peer = 200),
            [ValidationError::PerPeerAboveTotal { per_peer: 200, total: 128 }]
        );
    }

    #[test]
    fn api_port_zero_is_refused() {
        let problems = problems_of(|c| c.api.listen.set_port(0));
        assert_eq!(problems[0].key(), "api.listen");
    }

    #[test]
    fn location_rules() {
        let both = |c: &mut Config| {
            c.gateway.lat_deg = Some(52.5);
            c.gateway.lon_deg = Some(13.4);
        };
        assert!(problems_of(both).is_empty());
        assert_eq!(
            problems_of(|c| c.gateway.lat_deg = Some(52.5)),
            [ValidationError::HalfALocation { given: "gateway.lat_deg", missing: "gateway.lon_deg" }]
        );
        assert_eq!(
            problems_of(|c| {
                c.gateway.lat_deg = Some(91.0);
                c.gateway.lon_deg = Some(-181.0);
            }),
            [ValidationError::Latitude { value: 91.0 }, ValidationError::Longitude { value: -181.0 }]
        );
        assert_eq!(
            problems_of(|c| {
                both(c);
                c.gateway.h3_cell = Some("8c1f1d4886017ff".into());
            }),
            [ValidationError::TwoLocations]
        );
        assert_eq!(
            problems_of(|c| c.gateway.h3_cell = Some("berlin".into())),
            [ValidationError::H3Cell { value: "berlin".into() }]
        );
        // The resolution-2 cell containing the example location.
        assert_eq!(
            problems_of(|c| c.gateway.h3_cell = Some("821f1ffffffffff".into())),
            [ValidationError::H3CellResolution { value: "821f1ffffffffff".into(), resolution: 2 }]
        );
    }

    #[test]
    fn example_cell_is_the_location_of_the_example_coordinates() {
        let location = Location::from_lat_lng(52.5163, 13.3777).expect("valid coordinates");
        assert_eq!(format!("{:x}", location.0), "8c1f1d4886017ff");
        let region = Region::of(location, 3).expect("region");
        assert_eq!(Region::of(location, 4).and_then(|r| r.parent()), Ok(region));
    }

    #[test]
    fn a_valid_config_gives_a_valid_epoch_clock() {
        let network = Config::default().network;
        let clock = meshd_protocol::epoch::EpochClock::new(
            network.genesis_unix_s * 1000,
            network.epoch_length_s * 1000,
            network.grace_period_s * 1000,
        );
        assert!(clock.is_ok(), "{clock:?}");
        assert!(MAX_GENESIS_UNIX_S.checked_mul(1000).is_some(), "genesis fits in Unix ms");
    }

    #[test]
    fn antenna_gain_rules() {
        assert_eq!(
            problems_of(|c| c.gateway.antenna_gain_dbi = 30.0),
            [ValidationError::AntennaGain { value: 30.0 }]
        );
        assert_eq!(problems_of(|c| c.gateway.antenna_gain_dbi = f64::NAN).len(), 1);
    }

    #[test]
    fn log_level_rules() {
        for ok in ["info", "DEBUG", "info,meshd_gossip=debug", "warn, libp2p_swarm=off"] {
            assert!(problems_of(|c| c.log.level = ok.into()).is_empty(), "{ok}");
        }
        assert_eq!(
            problems_of(|c| c.log.level = "info,meshd=loud".into()),
            [ValidationError::LogLevel { value: "info,meshd=loud".into(), directive: "meshd=loud".into() }]
        );
        assert_eq!(problems_of(|c| c.log.level = String::new()).len(), 1);
        assert_eq!(Config::default().log.format, LogFormat::Text);
    }

    #[test]
    fn radio_and_meter_rules() {
        let keys =
            |edit: fn(&mut Config)| problems_of(edit).iter().map(ValidationError::key).collect::<Vec<_>>();
        assert!(
            problems_of(|c| {
                c.radio.semtech_listen = Some("0.0.0.0:1700".parse().expect("address"));
                c.radio.mqtt_url = Some("mqtt://127.0.0.1:1883".into());
                c.radio.gateway_ids = vec!["0016c001ff10a235".into()];
                c.meters.mqtt_url = Some("tcp://broker.local:1883".into());
            })
            .is_empty()
        );
        assert_eq!(
            keys(|c| c.radio.semtech_listen = Some("0.0.0.0:0".parse().expect("address"))),
            ["radio.semtech_listen"]
        );
        assert_eq!(
            keys(|c| c.radio.mqtt_url = Some("http://127.0.0.1:1883".into())),
            ["radio.mqtt_url", "radio.gateway_ids"]
        );
        assert_eq!(keys(|c| c.meters.mqtt_url = Some("mqtt://127.0.0.1".into())), ["meters.mqtt_url"]);
        assert_eq!(keys(|c| c.radio.mqtt_topic_prefix = "eu868/#".into()), ["radio.mqtt_topic_prefix"]);
        assert_eq!(keys(|c| c.meters.mqtt_topic = String::new()), ["meters.mqtt_topic"]);
        assert_eq!(keys(|c| c.radio.gateway_ids = vec!["0016c001ff10a23".into()]), ["radio.gateway_ids[0]"]);
        assert_eq!(keys(|c| c.radio.beacon_frequency_hz = 868), ["radio.beacon_frequency_hz"]);
        assert_eq!(keys(|c| c.radio.beacon_spreading_factor = 6), ["radio.beacon_spreading_factor"]);
        assert_eq!(keys(|c| c.radio.beacon_bandwidth_khz = 200), ["radio.beacon_bandwidth_khz"]);
        assert_eq!(keys(|c| c.radio.beacon_power_dbm = 31), ["radio.beacon_power_dbm"]);
        for problem in problems_of(|c| c.radio.beacon_power_dbm = 31) {
            assert!(problem.to_string().contains("fix:"), "{problem}");
        }
    }

    #[test]
    fn every_error_names_its_key_and_a_fix() {
        let problems = problems_of(|c| {
            c.network.name.clear();
            c.network.epoch_length_s = 1;
            c.p2p.listen = vec!["x".into()];
            c.gateway.antenna_gain_dbi = 99.0;
        });
        assert_eq!(problems.len(), 4);
        for problem in &problems {
            let text = problem.to_string();
            assert!(text.contains(&format!("`{}`", problem.key())), "{text}");
            assert!(text.contains("fix:"), "{text}");
        }
    }
}
