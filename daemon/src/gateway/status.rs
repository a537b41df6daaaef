//! What `GET /v1/status` answers and `meshd status` prints.

use serde::{Deserialize, Serialize};

/// The gateway's state, as JSON.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The gateway id ("12D3KooW…").
    pub gateway_id: String,
    /// The anchor-signing address (EIP-55).
    pub anchor_address: String,
    /// The network name.
    pub network: String,
    /// The committee region, H3 index in hex.
    pub region: String,
    /// The gateway's location, H3 index (resolution 12) in hex.
    pub location: String,
    /// Members of the committee.
    pub committee_size: usize,
    /// Whether this gateway sits on the committee.
    pub committee_member: bool,
    /// Peers with an open connection.
    pub peers: usize,
    /// The epoch now open.
    pub current_epoch: u64,
    /// Where the oldest epoch not yet final stands: "open", "grace",
    /// "deciding (round R)", "finalized" or "stalled: reason".
    pub deciding: Option<EpochState>,
    /// The latest finalized epoch.
    pub last_finalized: Option<Finalized>,
    /// Epochs finalized since start (restored ones included).
    pub finalized_epochs: usize,
    /// The latest anchor this gateway signed.
    pub last_anchor: Option<Anchor>,
    /// Seconds since the daemon started.
    pub uptime_s: u64,
}

/// An epoch and where it stands.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochState {
    /// The epoch.
    pub epoch: u64,
    /// Its state, as in [`Status::deciding`].
    pub state: String,
}

/// A finalized epoch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finalized {
    /// The epoch.
    pub epoch: u64,
    /// keccak256 of the encoded summary, 0x-hex.
    pub summary_hash: String,
    /// The consensus round that decided it.
    pub round: u32,
    /// Commit signatures in its certificate.
    pub signatures: usize,
    /// Beacons counted.
    pub beacons: u32,
    /// Witnesses counted.
    pub witnesses: u32,
    /// Meter attestations counted.
    pub attestations: u32,
    /// Energy attested, Wh.
    pub energy_wh: u64,
}

/// An anchor digest this gateway signed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    /// First epoch covered.
    pub first_epoch: u64,
    /// Last epoch covered.
    pub last_epoch: u64,
    /// Merkle root over the summaries, 0x-hex.
    pub root: String,
    /// The EIP-712 digest signed, 0x-hex.
    pub digest: String,
    /// "signed", "quorum reached", "anchored in block N" or "submission failed: …".
    pub state: String,
}

impl Status {
    /// The status as lines for people.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut line = |key: &str, value: String| out.push_str(&format!("{key:<16}{value}\n"));
        line("gateway id", self.gateway_id.clone());
        line("anchor address", self.anchor_address.clone());
        line("network", self.network.clone());
        line("region", self.region.clone());
        let member = if self.committee_member { "member" } else { "not a member" };
        line("committee", format!("{} gateways ({member})", self.committee_size));
        line("peers", self.peers.to_string());
        line("current epoch", self.current_epoch.to_string());
        if let Some(deciding) = &self.deciding {
            line("deciding", format!("epoch {}: {}", deciding.epoch, deciding.state));
        }
        match &self.last_finalized {
            Some(f) => line(
                "last finalized",
                format!(
                    "epoch {} in round {}, summary {} ({} signatures; {} beacons, {} witnesses, {} meter readings, {} Wh)",
                    f.epoch,
                    f.round,
                    f.summary_hash,
                    f.signatures,
                    f.beacons,
                    f.witnesses,
                    f.attestations,
                    f.energy_wh
                ),
            ),
            None => line("last finalized", "none yet".into()),
        }
        match &self.last_anchor {
            Some(a) => line(
                "last anchor",
                format!("epochs {}..={}, root {}: {}", a.first_epoch, a.last_epoch, a.root, a.state),
            ),
            None => line("last anchor", "none yet".into()),
        }
        line("uptime", format!("{} s", self.uptime_s));
        out
    }
}
