//! meshd's configuration: one TOML file, `MESHD_*` environment overrides,
//! documented defaults and validation.
//!
//! This crate is pure: it never reads a file or the environment itself. The
//! daemon reads the file's text and the process environment and passes both in:
//!
//! ```
//! use meshd_config::Config;
//!
//! let text = "[api]\nlisten = \"127.0.0.1:9000\"\n";
//! let env = [("MESHD_NETWORK__EPOCH_LENGTH_S", "600")];
//! let config = Config::load(text, env)?;
//! config.validate()?;
//! assert_eq!(config.network.epoch_length_s, 600);
//! assert_eq!(config.api.listen.port(), 9000);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! - [`Config::load`] parses the file (every key optional, unknown keys
//!   refused), then applies the environment overrides; its [`LoadError`]s name
//!   the key, the line or the variable.
//! - [`Config::validate`] checks single-field and cross-field rules; each
//!   [`ValidationError`] names the key, the value and the fix.
//!   [`Config::problems`] lists all of them at once.
//! - [`default_toml`] renders every section and key with its documentation and
//!   default: the output of `meshd config default`.
//!
//! # Environment overrides
//!
//! `MESHD_<SECTION>__<KEY>=<value>` overrides `<key>` of `[<section>]`: the
//! section and key in upper case, joined by a double underscore, e.g.
//! `MESHD_API__LISTEN=127.0.0.1:9000` or `MESHD_P2P__MDNS=false`. Strings and
//! paths are taken verbatim; numbers and booleans are written as in TOML; lists
//! are comma-separated (`MESHD_P2P__BOOTSTRAP=/dns4/a/tcp/4170/p2p/12D3…,/ip4/…`)
//! or a TOML array. Every variable starting with `MESHD_` must name a key, so
//! a misspelled override fails instead of being ignored.
//!
//! # Adding a section or key
//!
//! The schema is written once, in the `schema!` invocation below: each key's
//! doc comment is its rustdoc, its comment in the default file, and states its
//! default and unit; the tests check that the rendered default file parses to
//! [`Config::default`] and mentions every key.
#![deny(missing_docs)]

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

mod env;
mod error;
mod template;
mod validate;

pub use error::LoadError;
pub use template::default_toml;
pub use validate::ValidationError;

/// Documentation of one section, for the default file and for checking the
/// names of environment overrides.
#[derive(Clone, Copy, Debug)]
pub struct SectionDoc {
    /// The section's name, as in `[name]`.
    pub name: &'static str,
    /// The section's doc comment, one entry per line.
    pub doc: &'static [&'static str],
    /// The section's keys, in declaration order.
    pub keys: &'static [KeyDoc],
}

/// Documentation of one key.
#[derive(Clone, Copy, Debug)]
pub struct KeyDoc {
    /// The key's name.
    pub name: &'static str,
    /// The key's doc comment, one entry per line.
    pub doc: &'static [&'static str],
    /// For keys unset by default: an example value in TOML syntax, shown
    /// commented out in the default file.
    pub example: Option<&'static str>,
}

/// Defines each section struct (with its `Default`), [`Config`] and
/// [`SECTIONS`] from one description, so the docs, the defaults and the
/// rendered default file cannot disagree.
macro_rules! schema {
    (@example) => { None };
    (@example $example:literal) => { Some($example) };
    (
        $(
            $(#[doc = $section_doc:literal])*
            [$section:ident] $Section:ident {
                $(
                    $(#[doc = $doc:literal])*
                    $key:ident: $ty:ty = $default:expr $(, example = $example:literal)?;
                )*
            }
        )*
    ) => {
        $(
            $(#[doc = $section_doc])*
            #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
            #[serde(default, deny_unknown_fields)]
            pub struct $Section {
                $(
                    $(#[doc = $doc])*
                    pub $key: $ty,
                )*
            }

            impl Default for $Section {
                fn default() -> Self {
                    $Section { $($key: $default,)* }
                }
            }
        )*

        /// The whole configuration: one field per section of the file.
        #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct Config {
            $(
                $(#[doc = $section_doc])*
                pub $section: $Section,
            )*
        }

        /// Every section and key, in file order, with its documentation.
        pub const SECTIONS: &[SectionDoc] = &[
            $(
                SectionDoc {
                    name: stringify!($section),
                    doc: &[$($section_doc),*],
                    keys: &[
                        $(
                            KeyDoc {
                                name: stringify!($key),
                                doc: &[$($doc),*],
                                example: schema!(@example $($example)?),
                            },
                        )*
                    ],
                },
            )*
        ];
    };
}

schema! {
    /// The network this gateway belongs to. Every gateway of a network must
    /// use the same values: they define signatures, epochs and regions.
    [network] Network {
        /// Name of the network. It is part of every signature (the signing
        /// domain), so messages of one network are worthless on another, and
        /// of every gossip topic and protocol id. 1 to 64 lowercase ASCII
        /// letters, digits and '-'. Default: "meshd-devnet", a local
        /// development network.
        name: String = "meshd-devnet".to_owned();
        /// Start of epoch 0, as Unix time. Unit: seconds.
        /// Default: 1767225600 (2026-01-01T00:00:00Z).
        genesis_unix_s: u64 = 1_767_225_600;
        /// Length of one epoch: the network agrees on one summary per region
        /// and epoch. Unit: seconds, from 10 to 604800 (one week).
        /// Default: 3600 (one hour).
        epoch_length_s: u64 = 3600;
        /// Time after an epoch's end during which late reports are still
        /// accepted, before the region's committee decides. Must be shorter
        /// than the epoch. Unit: seconds. Default: 300 (five minutes).
        grace_period_s: u64 = 300;
        /// H3 resolution of a region: gateways in the same H3 cell of this
        /// resolution form a region with its own gossip topic and committee.
        /// From 3 (about 12,400 km²) to 8 (about 0.74 km²). Unit: H3
        /// resolution. Default: 4 (cells of about 1,770 km², edge about
        /// 22 km: a few LoRa ranges across).
        region_resolution: u8 = 4;
        /// Anchor the finalized summaries on chain every this many epochs.
        /// At least 1; the interval (this times the epoch length) is at most
        /// 31 days. Unit: epochs. Default: 24 (daily with one-hour epochs).
        anchor_every_epochs: u64 = 24;
        /// The first epoch the network decides: its summaries chain back to
        /// it (its `previous` hash is zero) and no gateway decides an earlier
        /// one. Every gateway of a network must use the same value. Unit:
        /// epochs since genesis. Default: 0 (the network starts at genesis).
        first_epoch: u64 = 0;
    }

    /// This gateway's secret keys.
    [identity] Identity {
        /// The key file, created by `meshd keys generate --out <file>`: the
        /// gateway's ed25519 identity key and its secp256k1 anchor key. Mode
        /// 0600; keep it outside `storage.path`. Relative paths are relative
        /// to the daemon's working directory.
        /// Default: "/var/lib/meshd/keys/gateway.key".
        key_file: PathBuf = PathBuf::from("/var/lib/meshd/keys/gateway.key");
    }

    /// Persistent state.
    [storage] Storage {
        /// Data directory: reports, votes and summaries (sled). Relative paths
        /// are relative to the daemon's working directory.
        /// Default: "/var/lib/meshd/data".
        path: PathBuf = PathBuf::from("/var/lib/meshd/data");
    }

    /// Peer-to-peer networking (libp2p).
    [p2p] P2p {
        /// Addresses to listen on, as multiaddrs. Port 4170 (TCP and UDP,
        /// distinct from IPFS's 4001) should be reachable from the internet
        /// for other gateways to dial in.
        /// Default: ["/ip4/0.0.0.0/tcp/4170", "/ip4/0.0.0.0/udp/4170/quic-v1"]
        /// (TCP and QUIC on every IPv4 interface).
        listen: Vec<String> =
            vec!["/ip4/0.0.0.0/tcp/4170".to_owned(), "/ip4/0.0.0.0/udp/4170/quic-v1".to_owned()];
        /// Peers to dial at start, as multiaddrs ending in `/p2p/<gateway id>`,
        /// e.g. "/dns4/boot.example.org/tcp/4170/p2p/12D3KooW...".
        /// Default: [] (none: rely on mDNS on the local network).
        bootstrap: Vec<String> = Vec::new();
        /// Discover peers on the local network with mDNS.
        /// Default: true.
        mdns: bool = true;
        /// Serve as a circuit relay for peers behind NATs; costs bandwidth,
        /// meant for gateways with a public address.
        /// Default: false.
        relay_server: bool = false;
        /// Most established connections, in and out. Unit: connections.
        /// Default: 128 (a gossip mesh of about 12 per topic plus discovery
        /// and relay peers, with room to spare, in bounded memory on a Pi).
        max_connections: u32 = 128;
        /// Most established connections to one peer. Unit: connections.
        /// Default: 3 (one relayed, one direct after hole punching, one more
        /// while a simultaneous dial of both sides is resolved).
        max_connections_per_peer: u32 = 3;
        /// Most incoming connections still in their handshake. Unit:
        /// connections. Default: 32 (bounds the handshake work a flood of
        /// dials can cause on a Raspberry Pi).
        max_pending_incoming: u32 = 32;
        /// Most outgoing dials in progress. Unit: connections. Default: 32.
        max_pending_outgoing: u32 = 32;
    }

    /// The local HTTP API: health, status and metrics.
    [api] Api {
        /// Address and port to listen on. It exposes the gateway's state:
        /// keep it on the loopback interface unless a firewall guards it.
        /// Default: "127.0.0.1:4180" (local only).
        listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 4180));
    }

    /// The gateway's radio: where it is and its antenna. Set the location
    /// either as lat_deg and lon_deg, or as h3_cell; unset by default.
    [gateway] Gateway {
        /// Latitude of the antenna, WGS84, from -90 to 90. Unit: degrees.
        /// Default: unset.
        lat_deg: Option<f64> = None, example = "52.5163";
        /// Longitude of the antenna, WGS84, from -180 to 180. Unit: degrees.
        /// Default: unset.
        lon_deg: Option<f64> = None, example = "13.3777";
        /// Location of the antenna as an H3 cell index (15 hex digits) at
        /// resolution 12, the resolution of asserted locations; instead of
        /// lat_deg and lon_deg. Default: unset.
        h3_cell: Option<String> = None, example = "\"8c1f1d4886017ff\"";
        /// Gain of the antenna. Unit: dBi, from -10 to 20.
        /// Default: 2.0 (a typical stock antenna).
        antenna_gain_dbi: f64 = 2.0;
    }

    /// Who sits on this gateway's committee: the registered gateways of
    /// its region.
    [registry] Registry {
        /// A fixed list of registered gateways (their ids, "12D3KooW..."),
        /// this one included, for private and development networks: all of
        /// them form this gateway's committee, whatever their location. At
        /// least 4 for fault tolerance. Empty: read the registry from the
        /// chain (`chain.registry_contract`).
        /// Default: [] (read from the chain).
        members: Vec<String> = Vec::new();
    }

    /// The EVM chain that holds the gateway registry and the anchors.
    [chain] Chain {
        /// JSON-RPC endpoint of an EVM node, "http://", "https://", "ws://"
        /// or "wss://". Unset: no chain; the registry must then be fixed in
        /// `registry.members` and nothing is anchored.
        /// Default: unset.
        rpc_url: Option<String> = None, example = "\"http://127.0.0.1:8545\"";
        /// EIP-155 chain id: part of every anchor signature, so signatures for
        /// one chain are worthless on another.
        /// Default: 31337 (a local development chain).
        chain_id: u64 = 31_337;
        /// Address of the EpochAnchor contract (0x and 40 hex digits).
        /// Default: unset (no anchoring).
        anchor_contract: Option<String> = None, example = "\"0x5FbDB2315678afecb367f032d93F642f64180aa3\"";
        /// Address of the GatewayRegistry contract (0x and 40 hex digits).
        /// Default: unset.
        registry_contract: Option<String> = None, example = "\"0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512\"";
        /// First block whose events are read: the registry's and the
        /// anchor committee's history is rebuilt from there. Set it to the
        /// contracts' deployment block on a public chain, whose RPC may
        /// refuse a log query from genesis. Unit: block number.
        /// Default: 0 (from genesis: fine on a local or young chain).
        from_block: u64 = 0;
    }

    /// A synthetic source of traffic for demonstrations and test meshes,
    /// in place of a radio and meters: the gateway "hears" the beacons of
    /// the other gateways whose beacon reports reach it, with a signal
    /// computed from their distance (free-space path loss), and produces
    /// meter readings that follow a daylight curve. Never enable it on a
    /// gateway of a production network.
    [synthetic] Synthetic {
        /// Turn the synthetic source on.
        /// Default: false.
        enabled: bool = false;
        /// Synthetic energy meters attached to this gateway, each with its
        /// own key, from 0 to 64. Unit: meters. Default: 1.
        meters: u32 = 1;
        /// Peak power of each synthetic meter (a solar installation at
        /// noon). Unit: watts, from 1 to 10,000,000. Default: 5000.
        meter_peak_w: u64 = 5_000;
    }

    /// The LoRa radio: a Semtech UDP packet forwarder (GWMP v2) on the
    /// concentrator, a ChirpStack MQTT forwarder, or both. With neither
    /// set the gateway hears nothing and sends no beacons (use
    /// `[synthetic]` for a demonstration without a radio).
    [radio] Radio {
        /// Address the Semtech UDP packet forwarder server listens on; the
        /// forwarder's `serv_port_up` and `serv_port_down` both point here.
        /// Default: unset (no Semtech UDP server).
        semtech_listen: Option<SocketAddr> = None, example = "\"0.0.0.0:1700\"";
        /// MQTT broker of a ChirpStack MQTT forwarder, as
        /// "mqtt://host:port" (or "tcp://host:port"). Default: unset (no
        /// MQTT forwarder).
        mqtt_url: Option<String> = None, example = "\"mqtt://127.0.0.1:1883\"";
        /// Topic prefix of the ChirpStack MQTT forwarder (its
        /// `topic_prefix`, usually the region name): topics are
        /// `{prefix}/gateway/{id}/event/up` and so on.
        /// Default: "eu868".
        mqtt_topic_prefix: String = "eu868".to_owned();
        /// Gateway ids (EUI-64, 16 hex digits) of the concentrators behind
        /// the MQTT broker; at least one when `mqtt_url` is set. Beacons go
        /// out through the first. Default: [] (none).
        gateway_ids: Vec<String> = Vec::new();
        /// Frequency beacons are sent on. Unit: Hz, from 137000000 to
        /// 1020000000 (the LoRa bands). Default: 869525000 (EU868's
        /// high-power sub-band, 10% duty cycle, where LoRaWAN also beacons).
        beacon_frequency_hz: u32 = 869_525_000;
        /// LoRa spreading factor of beacons, from 7 to 12. Default: 9 (the
        /// LoRaWAN class B beacon's: about 1.5 km more range than SF7 for an
        /// airtime of 206 ms for a 20-byte frame).
        beacon_spreading_factor: u8 = 9;
        /// LoRa bandwidth of beacons: 125, 250 or 500. Unit: kHz.
        /// Default: 125.
        beacon_bandwidth_khz: u16 = 125;
        /// Transmit power of beacons, from 0 to 30. Unit: dBm. Default: 14
        /// (EU868's common limit; 869.525 MHz allows 27 dBm ERP).
        beacon_power_dbm: u8 = 14;
    }

    /// Energy meters: signed readings arrive by `POST /v1/meter/readings`
    /// on the API address, and, when `mqtt_url` is set, on an MQTT topic.
    [meters] Meters {
        /// MQTT broker meters publish their readings to, as
        /// "mqtt://host:port". Default: unset (HTTP only).
        mqtt_url: Option<String> = None, example = "\"mqtt://127.0.0.1:1883\"";
        /// Topic meters publish their readings to (the JSON of
        /// docs/meters.md, one reading per message); no wildcards.
        /// Default: "meshd/meter/readings".
        mqtt_topic: String = "meshd/meter/readings".to_owned();
    }

    /// Logging, to standard error.
    [log] Log {
        /// Verbosity: a level (error, warn, info, debug, trace, off), or
        /// comma-separated target=level directives as in RUST_LOG, e.g.
        /// "info,meshd_gossip=debug". RUST_LOG and -v take precedence.
        /// Default: "info".
        level: String = "info".to_owned();
        /// Format: "text" for people, "json" (one object per line) for log
        /// collectors. Default: "text".
        format: LogFormat = LogFormat::Text;
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl Config {
    /// Prefix of every environment override.
    pub const ENV_PREFIX: &'static str = "MESHD_";

    /// Reads a configuration from the text of a TOML file (empty text: all
    /// defaults) and then applies the `MESHD_*` overrides found in `env`;
    /// other variables are ignored. Call [`Config::validate`] on the result.
    pub fn load<I, K, V>(text: &str, env: I) -> Result<Config, LoadError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let config: Config = toml::from_str(text).map_err(|err| error::file_error(text, &err))?;
        env::apply(config, env)
    }

    /// A one-line summary of the main settings, for `meshd config check`.
    pub fn summary(&self) -> String {
        format!(
            "network {:?}, epochs of {} s (+{} s grace), region resolution {}, anchor every {} epochs, \
             key file {}, data {}, {} listen and {} bootstrap addresses, api {}, log {} ({})",
            self.network.name,
            self.network.epoch_length_s,
            self.network.grace_period_s,
            self.network.region_resolution,
            self.network.anchor_every_epochs,
            self.identity.key_file.display(),
            self.storage.path.display(),
            self.p2p.listen.len(),
            self.p2p.bootstrap.len(),
            self.api.listen,
            self.log.level,
            match self.log.format {
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_ENV: [(&str, &str); 0] = [];

    #[test]
    fn empty_file_gives_the_defaults() {
        assert_eq!(Config::load("", NO_ENV), Ok(Config::default()));
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    #[test]
    fn every_key_documents_its_default() {
        for section in SECTIONS {
            assert!(!section.doc.is_empty(), "[{}] has no doc comment", section.name);
            for key in section.keys {
                let doc = key.doc.concat();
                assert!(doc.contains("Default:"), "{}.{} does not state its default", section.name, key.name);
            }
        }
    }

    #[test]
    fn a_file_sets_keys_and_keeps_other_defaults() {
        let text = "[network]\nname = \"testnet\"\nepoch_length_s = 60\n\n[log]\nformat = \"json\"\n";
        let config = Config::load(text, NO_ENV).expect("valid file");
        assert_eq!(config.network.name, "testnet");
        assert_eq!(config.network.epoch_length_s, 60);
        assert_eq!(config.network.grace_period_s, Network::default().grace_period_s);
        assert_eq!(config.log.format, LogFormat::Json);
        assert_eq!(config.api, Api::default());
    }

    #[test]
    fn summary_names_the_main_settings() {
        let summary = Config::default().summary();
        assert!(summary.contains("meshd-devnet"), "{summary}");
        assert!(summary.contains("127.0.0.1:4180"), "{summary}");
    }
}
