//! Scenario files: what to simulate, in TOML.
//!
//! Every table is `deny_unknown_fields` with defaults, so a scenario names
//! only what it changes. [`Scenario::parse`] turns any mistake into a
//! [`ScenarioError`] that names the key (`network.loss`) and the problem.

use serde::Deserialize;

/// A scenario: one seed, the world, the network, the radio, meters, faults
/// and adversaries.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// Name shown in the report. Default "unnamed".
    pub name: String,
    /// The seed of everything random. Default 1.
    pub seed: u64,
    /// Epochs to run. Default 3.
    pub epochs: u64,
    /// Epoch length, ms. Default 60,000 (a minute of virtual time).
    pub epoch_ms: u64,
    /// Grace period after an epoch, ms. Default 10,000.
    pub grace_ms: u64,
    /// Anchor every this many epochs; 0 disables. Default 2.
    pub anchor_every: u64,
    /// Where the gateways are.
    pub placement: Placement,
    /// The internet between gateways.
    pub network: Network,
    /// The LoRa radio between gateways.
    pub radio: RadioModel,
    /// Energy meters.
    pub meters: Meters,
    /// Crashes, churn and partitions.
    pub faults: Faults,
    /// Misbehaving gateways.
    pub adversaries: Adversaries,
    /// Real-stack mode settings.
    pub real_stack: RealStack,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            name: "unnamed".into(),
            seed: 1,
            epochs: 3,
            epoch_ms: 60_000,
            grace_ms: 10_000,
            anchor_every: 2,
            placement: Placement::default(),
            network: Network::default(),
            radio: RadioModel::default(),
            meters: Meters::default(),
            faults: Faults::default(),
            adversaries: Adversaries::default(),
            real_stack: RealStack::default(),
        }
    }
}

/// How gateways are spread.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// Uniform over the disc.
    Uniform,
    /// Most in a few cities (Gaussian around each centre), the rest uniform.
    Clustered,
    /// Sparse: uniform with a minimum spacing of a few km.
    Rural,
}

/// Placement of gateways.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Placement {
    /// Number of gateways. Default 32.
    pub gateways: usize,
    /// Layout. Default `clustered`.
    pub layout: Layout,
    /// Centre of the area, [latitude, longitude] degrees. Default Paris.
    pub center: [f64; 2],
    /// Radius of the area, km. Default 20.
    pub radius_km: f64,
    /// Cities of the clustered layout. Default 2.
    pub cities: usize,
    /// Standard deviation of a city's spread, km. Default 3.
    pub city_sigma_km: f64,
    /// Share of gateways in cities (clustered layout). Default 0.8.
    pub city_share: f64,
    /// H3 resolution of regions (3..=8). Default 6 (≈36 km² cells).
    pub region_resolution: u8,
}

impl Default for Placement {
    fn default() -> Self {
        Placement {
            gateways: 32,
            layout: Layout::Clustered,
            center: [48.85, 2.35],
            radius_km: 20.0,
            cities: 2,
            city_sigma_km: 3.0,
            city_share: 0.8,
            region_resolution: 6,
        }
    }
}

/// The internet between gateways.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Network {
    /// Median one-way latency of a link, ms. Default 40.
    pub latency_median_ms: f64,
    /// Log-normal sigma of link latencies (spread between links). Default 0.5.
    pub latency_sigma: f64,
    /// Uniform jitter added per message, ms. Default 10.
    pub jitter_ms: u64,
    /// Probability a message copy is lost. Default 0.
    pub loss: f64,
    /// Uplink bandwidth per gateway, kbit/s; copies queue behind each other. Default 10,000.
    pub bandwidth_kbps: u64,
    /// Time to make a batch durable, ms. Default 2.
    pub persist_ms: u64,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            latency_median_ms: 40.0,
            latency_sigma: 0.5,
            jitter_ms: 10,
            loss: 0.0,
            bandwidth_kbps: 10_000,
            persist_ms: 2,
        }
    }
}

/// The radio model: free-space path loss, clutter, log-normal shadowing, noise floor.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RadioModel {
    /// Conducted transmit power, dBm. Default 14 (EU868 limit).
    pub tx_power_dbm: f64,
    /// Antenna gain, dBi. Default 3.
    pub antenna_gain_dbi: f64,
    /// Frequency, Hz. Default 868,100,000.
    pub frequency_hz: u32,
    /// Spreading factor (7..=12). Default 7.
    pub spreading_factor: u8,
    /// Loss beyond free space from buildings and terrain, dB. Default 30.
    pub clutter_db: f64,
    /// Log-normal shadowing sigma per link, dB. Default 8.
    pub shadowing_sigma_db: f64,
    /// Fast fading per reception, uniform ± dB. Default 2.
    pub fading_db: f64,
    /// Receiver noise figure, dB (noise floor = −174 + 10·log10(BW) + NF). Default 6.
    pub noise_figure_db: f64,
}

impl Default for RadioModel {
    fn default() -> Self {
        RadioModel {
            tx_power_dbm: 14.0,
            antenna_gain_dbi: 3.0,
            frequency_hz: 868_100_000,
            spreading_factor: 7,
            clutter_db: 30.0,
            shadowing_sigma_db: 8.0,
            fading_db: 2.0,
            noise_figure_db: 6.0,
        }
    }
}

/// Energy meters (solar production).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Meters {
    /// Number of meters, each attached to a gateway. Default 0.
    pub count: usize,
    /// Rated capacity, W. Default 5,000.
    pub capacity_w: u64,
    /// Reading interval, s. Default 900.
    pub interval_s: u64,
    /// Relative noise of production (clouds), 0..1. Default 0.2.
    pub noise: f64,
    /// Probability an interval is an outage (fault status, no energy). Default 0.01.
    pub outage: f64,
    /// Hour of the day (UTC) at virtual genesis, 0..24. Default 6.
    pub start_hour: f64,
    /// Hours of virtual daylight per epoch: compresses the daily curve
    /// into short epochs. Default 1 (one hour per epoch).
    pub hours_per_epoch: f64,
}

impl Default for Meters {
    fn default() -> Self {
        Meters {
            count: 0,
            capacity_w: 5_000,
            interval_s: 900,
            noise: 0.2,
            outage: 0.01,
            start_hour: 6.0,
            hours_per_epoch: 1.0,
        }
    }
}

/// A crash of one gateway.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Crash {
    /// Gateway index.
    pub gateway: usize,
    /// When, ms after genesis.
    pub at_ms: u64,
    /// When it restarts from its store, ms after genesis; never if absent.
    pub restart_ms: Option<u64>,
}

/// A partition: a share of every region cut off from the rest.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    /// Share of each region's gateways in the minority, 0..1.
    pub fraction: f64,
    /// Start, ms after genesis.
    pub from_ms: u64,
    /// Heal, ms after genesis.
    pub until_ms: u64,
}

/// Faults.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Explicit crashes.
    pub crashes: Vec<Crash>,
    /// Probability per gateway per epoch of going down (churn). Default 0.
    pub churn_per_epoch: f64,
    /// How long a churned gateway stays down, ms. Default 0 (then one epoch).
    pub churn_down_ms: u64,
    /// Partitions.
    pub partitions: Vec<Partition>,
}

/// Misbehaving gateways; counts are per network, picked from the seed.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Adversaries {
    /// Gateways that report every beacon they see gossiped as heard, with a
    /// strong RSSI. Default 0.
    pub forged_witnesses: usize,
    /// The RSSI the forgers claim, dBm. Default −50.
    pub forged_rssi_dbm: f64,
    /// Gateways asserting a location away from where they are. Default 0.
    pub location_liars: usize,
    /// How far liars claim to be, km. Default 30.
    pub lie_km: f64,
    /// Sybil rings: groups of gateways in one place that assert spread-out
    /// locations and witness each other with plausible RSSI. Default 0.
    pub sybil_rings: usize,
    /// Gateways per ring. Default 4.
    pub sybil_ring_size: usize,
    /// Radius of a ring's asserted locations, km. Default 2.
    pub sybil_spread_km: f64,
    /// Committee members sending conflicting votes to the two halves. Default 0.
    pub equivocators: usize,
    /// Members that never send their proposals. Default 0.
    pub silent_leaders: usize,
    /// Gateways flooding their region with junk and signed reports of unknown beacons. Default 0.
    pub spammers: usize,
    /// Messages a spammer sends per epoch. Default 200.
    pub spam_per_epoch: usize,
}

impl Default for Adversaries {
    fn default() -> Self {
        Adversaries {
            forged_witnesses: 0,
            forged_rssi_dbm: -50.0,
            location_liars: 0,
            lie_km: 30.0,
            sybil_rings: 0,
            sybil_ring_size: 4,
            sybil_spread_km: 2.0,
            equivocators: 0,
            silent_leaders: 0,
            spammers: 0,
            spam_per_epoch: 200,
        }
    }
}

impl Adversaries {
    /// Gateways that misbehave in total.
    pub fn total(&self) -> usize {
        self.forged_witnesses
            + self.location_liars
            + self.sybil_rings * self.sybil_ring_size
            + self.equivocators
            + self.silent_leaders
            + self.spammers
    }
}

/// Real-stack mode: the real gossip crate on libp2p's memory transport.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RealStack {
    /// Messages published (round-robin over nodes). Default 100.
    pub messages: usize,
    /// Pause between publishes, ms. Default 20.
    pub publish_interval_ms: u64,
    /// Longest wait for the overlay to form once every node has started, s.
    /// Default 60.
    pub form_timeout_s: u64,
    /// How long to wait for the last deliveries, s. Default 10.
    pub drain_s: u64,
    /// Gossipsub mesh bounds `[D, D_low, D_high]` of every node, both
    /// stacks alike. Default none: each stack's own (meshd 6/4/12, plain
    /// gossipsub 6/5/12). A mesh is pruned only above `D_high`, so with the
    /// default bounds every connection of the run's random graph (eight on
    /// average) carries each message. Lower bounds cut those copies but
    /// leave peers outside the mesh, which every heartbeat then sends
    /// IHAVE gossip: with `[4, 3, 6]` a 5,000-node run cost more CPU per
    /// delivery, not less (797 against 693 µs, before the simulator's
    /// timer-thread and allocator changes).
    pub mesh: Option<[usize; 3]>,
}

impl Default for RealStack {
    fn default() -> Self {
        RealStack { messages: 100, publish_interval_ms: 20, form_timeout_s: 60, drain_s: 10, mesh: None }
    }
}

/// A scenario that cannot be used: the key and the problem.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    /// The file is not TOML.
    #[error("not valid TOML: {0}")]
    Syntax(String),
    /// A key has the wrong type, is unknown, or its value is malformed.
    #[error("key `{key}`: {problem}")]
    Key {
        /// The dotted key path.
        key: String,
        /// What is wrong.
        problem: String,
    },
}

fn bad(key: &str, problem: impl Into<String>) -> ScenarioError {
    ScenarioError::Key { key: key.into(), problem: problem.into() }
}

fn probability(key: &str, p: f64) -> Result<(), ScenarioError> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(bad(key, format!("must be between 0 and 1 (got {p})")))
    }
}

fn positive(key: &str, v: f64) -> Result<(), ScenarioError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(bad(key, format!("must be a positive number (got {v})")))
    }
}

/// Largest network simulated: beyond it one machine's memory, not the
/// simulator, is the limit (a node holds a few hundred KiB).
pub const MAX_GATEWAYS: usize = 100_000;
/// Most epochs: a thousand is weeks of hourly epochs, more than any question needs.
pub const MAX_EPOCHS: u64 = 1_000;

impl Scenario {
    /// Parses and validates a scenario file's text.
    pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        let table: toml::Table =
            text.parse().map_err(|e: toml::de::Error| ScenarioError::Syntax(e.to_string()))?;
        let scenario: Scenario =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let key = e.path().to_string();
                let problem = e.inner().to_string();
                ScenarioError::Key { key, problem }
            })?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// Checks values and cross-field rules.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        if self.epochs == 0 || self.epochs > MAX_EPOCHS {
            return Err(bad("epochs", format!("must be 1..={MAX_EPOCHS} (got {})", self.epochs)));
        }
        if self.epoch_ms < 10_000 {
            return Err(bad("epoch_ms", "must be at least 10000: the beacon window and consensus need room"));
        }
        if self.grace_ms == 0 || self.grace_ms >= self.epoch_ms {
            return Err(bad("grace_ms", format!("must be above 0 and below epoch_ms ({})", self.epoch_ms)));
        }
        let p = &self.placement;
        if p.gateways < 4 || p.gateways > MAX_GATEWAYS {
            return Err(bad(
                "placement.gateways",
                format!("must be 4..={MAX_GATEWAYS} (got {})", p.gateways),
            ));
        }
        if !(-85.0..=85.0).contains(&p.center[0]) || !(-180.0..=180.0).contains(&p.center[1]) {
            return Err(bad("placement.center", "must be [latitude in -85..85, longitude in -180..180]"));
        }
        positive("placement.radius_km", p.radius_km)?;
        if p.radius_km > 2_000.0 {
            return Err(bad("placement.radius_km", "must be at most 2000"));
        }
        positive("placement.city_sigma_km", p.city_sigma_km)?;
        probability("placement.city_share", p.city_share)?;
        if p.layout == Layout::Clustered && p.cities == 0 {
            return Err(bad("placement.cities", "the clustered layout needs at least one city"));
        }
        if !(3..=8).contains(&p.region_resolution) {
            return Err(bad(
                "placement.region_resolution",
                format!("must be 3..=8 (got {})", p.region_resolution),
            ));
        }
        let n = &self.network;
        positive("network.latency_median_ms", n.latency_median_ms)?;
        if !(0.0..=3.0).contains(&n.latency_sigma) {
            return Err(bad("network.latency_sigma", "must be 0..=3"));
        }
        probability("network.loss", n.loss)?;
        if n.loss >= 1.0 {
            return Err(bad("network.loss", "must be below 1: nothing would arrive"));
        }
        if n.bandwidth_kbps == 0 {
            return Err(bad("network.bandwidth_kbps", "must be above 0"));
        }
        let r = &self.radio;
        if !(7..=12).contains(&r.spreading_factor) {
            return Err(bad("radio.spreading_factor", "must be 7..=12"));
        }
        if !(-10.0..=30.0).contains(&r.tx_power_dbm) {
            return Err(bad("radio.tx_power_dbm", "must be -10..=30 (the witness rules' range)"));
        }
        if !(-10.0..=15.0).contains(&r.antenna_gain_dbi) {
            return Err(bad("radio.antenna_gain_dbi", "must be -10..=15 (the witness rules' range)"));
        }
        if meshd_protocol::rules::witness::frequency_in_band(r.frequency_hz).is_err() {
            return Err(bad("radio.frequency_hz", "must lie in a LoRaWAN band (e.g. 863-870 MHz)"));
        }
        for (key, v) in [
            ("radio.clutter_db", r.clutter_db),
            ("radio.shadowing_sigma_db", r.shadowing_sigma_db),
            ("radio.fading_db", r.fading_db),
            ("radio.noise_figure_db", r.noise_figure_db),
        ] {
            if !(0.0..=60.0).contains(&v) {
                return Err(bad(key, format!("must be 0..=60 dB (got {v})")));
            }
        }
        let m = &self.meters;
        if m.count > p.gateways * 16 {
            return Err(bad("meters.count", "at most 16 meters per gateway"));
        }
        if m.count > 0 {
            if m.capacity_w == 0 {
                return Err(bad("meters.capacity_w", "must be above 0"));
            }
            if m.interval_s < 60 {
                return Err(bad("meters.interval_s", "must be at least 60"));
            }
            probability("meters.noise", m.noise)?;
            probability("meters.outage", m.outage)?;
            if !(0.0..24.0).contains(&m.start_hour) {
                return Err(bad("meters.start_hour", "must be 0..24"));
            }
            positive("meters.hours_per_epoch", m.hours_per_epoch)?;
        }
        let f = &self.faults;
        for (i, c) in f.crashes.iter().enumerate() {
            if c.gateway >= p.gateways {
                return Err(bad(
                    &format!("faults.crashes[{i}].gateway"),
                    format!("no gateway {} (there are {})", c.gateway, p.gateways),
                ));
            }
            if c.restart_ms.is_some_and(|r| r <= c.at_ms) {
                return Err(bad(&format!("faults.crashes[{i}].restart_ms"), "must be after at_ms"));
            }
        }
        probability("faults.churn_per_epoch", f.churn_per_epoch)?;
        for (i, part) in f.partitions.iter().enumerate() {
            probability(&format!("faults.partitions[{i}].fraction"), part.fraction)?;
            if part.until_ms <= part.from_ms {
                return Err(bad(&format!("faults.partitions[{i}].until_ms"), "must be after from_ms"));
            }
        }
        let a = &self.adversaries;
        if a.total() > p.gateways {
            return Err(bad(
                "adversaries",
                format!("{} adversarial gateways but only {} gateways", a.total(), p.gateways),
            ));
        }
        if a.sybil_rings > 0 && a.sybil_ring_size < 2 {
            return Err(bad("adversaries.sybil_ring_size", "a ring needs at least 2 gateways"));
        }
        positive("adversaries.lie_km", a.lie_km)?;
        positive("adversaries.sybil_spread_km", a.sybil_spread_km)?;
        if a.spam_per_epoch > 100_000 {
            return Err(bad("adversaries.spam_per_epoch", "at most 100000"));
        }
        if !(-150.0..=0.0).contains(&a.forged_rssi_dbm) {
            return Err(bad("adversaries.forged_rssi_dbm", "must be -150..=0"));
        }
        if self.real_stack.messages == 0 {
            return Err(bad("real_stack.messages", "must be above 0"));
        }
        if let Some([n, low, high]) = self.real_stack.mesh {
            meshd_gossip::config::check_mesh_bounds(n, low, high)
                .map_err(|e| bad("real_stack.mesh", format!("[D, D_low, D_high]: {e}")))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_the_defaults() {
        assert_eq!(Scenario::parse(""), Ok(Scenario::default()));
    }

    #[test]
    fn an_unknown_key_is_named() {
        let err = Scenario::parse("[network]\nlos = 0.1\n").expect_err("unknown key");
        let text = err.to_string();
        assert!(text.contains("network.los"), "{text}");
        assert!(text.contains("unknown field"), "{text}");
    }

    #[test]
    fn a_wrong_type_is_named() {
        let err = Scenario::parse("[placement]\ngateways = \"many\"\n").expect_err("wrong type");
        assert!(err.to_string().contains("placement.gateways"), "{err}");
    }

    #[test]
    fn an_out_of_range_value_is_named() {
        let err = Scenario::parse("[network]\nloss = 1.5\n").expect_err("range");
        assert_eq!(err, bad("network.loss", "must be between 0 and 1 (got 1.5)"));
        let err = Scenario::parse("[[faults.crashes]]\ngateway = 99\nat_ms = 5\n").expect_err("no gateway");
        assert!(err.to_string().contains("faults.crashes[0].gateway"), "{err}");
    }

    #[test]
    fn mesh_bounds_out_of_order_are_named() {
        let err = Scenario::parse("[real_stack]\nmesh = [4, 5, 6]\n").expect_err("low above D");
        assert!(err.to_string().contains("real_stack.mesh"), "{err}");
        let err = Scenario::parse("[real_stack]\nmesh = [4, 3]\n").expect_err("two bounds");
        assert!(err.to_string().contains("real_stack.mesh"), "{err}");
        let ok = Scenario::parse("[real_stack]\nmesh = [4, 3, 6]\n").expect("valid bounds");
        assert_eq!(ok.real_stack.mesh, Some([4, 3, 6]));
    }

    #[test]
    fn broken_toml_is_a_syntax_error() {
        assert!(matches!(Scenario::parse("epochs = = 3"), Err(ScenarioError::Syntax(_))));
    }
}
