//! The simulated world: where gateways are (true and asserted), their keys,
//! regions and committees, who can hear whom on the radio, and who
//! misbehaves. Built once from a [`Scenario`] and its seed.

use std::collections::BTreeMap;

use meshd_node::committee::committee_regions;
use meshd_node::sim::Rng;
use meshd_protocol::geo::{Location, Region};
use meshd_protocol::keys::Keypair;
use meshd_protocol::{GatewayId, keccak256};

use crate::scenario::{Layout, Scenario};

/// Kilometres per degree of latitude.
const KM_PER_DEGREE: f64 = 111.32;

/// Uniform in `[0, 1)` from 53 random bits.
pub fn unit(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// A standard normal deviate (Box–Muller).
pub fn normal(rng: &mut Rng) -> f64 {
    let u1 = unit(rng).max(f64::MIN_POSITIVE);
    let u2 = unit(rng);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A generator derived from the seed and a purpose, so that adding draws
/// in one part of the simulation does not shift another's.
pub fn derived(seed: u64, purpose: &[u8], index: u64) -> Rng {
    let h = keccak256([&seed.to_le_bytes()[..], purpose, &index.to_le_bytes()[..]].concat());
    let mut w = [0u8; 8];
    w.copy_from_slice(&h.0[..8]);
    Rng::new(u64::from_le_bytes(w))
}

/// What a gateway does wrong, if anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Follows the protocol.
    Honest,
    /// Reports beacons it never heard.
    ForgedWitness,
    /// Asserts a location away from its true one.
    LocationLiar,
    /// Member of a Sybil ring (the ring's number).
    Sybil(u16),
    /// Sends conflicting votes.
    Equivocator,
    /// Never sends its proposals.
    SilentLeader,
    /// Floods its region.
    Spammer,
}

impl Role {
    /// The role's label in reports.
    pub fn label(self) -> &'static str {
        match self {
            Role::Honest => "honest",
            Role::ForgedWitness => "forged_witness",
            Role::LocationLiar => "location_liar",
            Role::Sybil(_) => "sybil",
            Role::Equivocator => "equivocator",
            Role::SilentLeader => "silent_leader",
            Role::Spammer => "spammer",
        }
    }
}

/// One gateway.
#[derive(Clone, Debug)]
pub struct Gateway {
    /// Its key's secret.
    pub secret: [u8; 32],
    /// Its id.
    pub id: GatewayId,
    /// Where it really is, km east and north of the centre.
    pub true_km: (f64, f64),
    /// Where it says it is, km east and north of the centre.
    pub asserted_km: (f64, f64),
    /// The asserted location as an H3 cell.
    pub location: Location,
    /// Its committee region.
    pub region: Region,
    /// Its behaviour.
    pub role: Role,
}

/// A radio link: `to` hears `from`'s beacons with this mean RSSI.
#[derive(Clone, Copy, Debug)]
pub struct Link {
    /// The hearing gateway.
    pub to: u32,
    /// Mean received power, dBm (path loss, clutter and shadowing).
    pub mean_rssi_dbm: f32,
}

/// The world.
pub struct World {
    /// Gateways, by index.
    pub gateways: Vec<Gateway>,
    /// Committee regions and their gateways (indexes, ascending), in region order.
    pub regions: BTreeMap<Region, Vec<usize>>,
    /// Per gateway, who can hear its beacon.
    pub links: Vec<Vec<Link>>,
    /// Noise floor, dBm.
    pub noise_floor_dbm: f64,
    /// Lowest SNR the spreading factor demodulates, dB.
    pub demod_snr_db: f64,
}

/// Lowest SNR LoRa demodulates per spreading factor 7..=12, dB (Semtech SX1276 datasheet table 13).
const DEMOD_SNR_DB: [f64; 6] = [-7.5, -10.0, -12.5, -15.0, -17.5, -20.0];

/// Free-space path loss, dB, at `d_km` and `f_hz`.
pub fn fspl_db(d_km: f64, f_hz: f64) -> f64 {
    20.0 * (d_km.max(0.001) * 1000.0).log10() + 20.0 * f_hz.log10() - 147.55
}

fn to_lat_lng(center: [f64; 2], (x, y): (f64, f64)) -> (f64, f64) {
    let lat = center[0] + y / KM_PER_DEGREE;
    let lng = center[1] + x / (KM_PER_DEGREE * center[0].to_radians().cos());
    (lat, lng)
}

fn in_disc(rng: &mut Rng, radius: f64) -> (f64, f64) {
    let r = radius * unit(rng).sqrt();
    let a = std::f64::consts::TAU * unit(rng);
    (r * a.cos(), r * a.sin())
}

/// Why a world cannot be built.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum WorldError {
    /// A position has no H3 cell (outside valid coordinates).
    #[error("gateway {0} is placed outside valid coordinates; make placement.radius_km smaller")]
    Location(usize),
}

impl World {
    /// Places gateways, assigns roles, computes regions and radio links.
    pub fn build(s: &Scenario) -> Result<World, WorldError> {
        let p = &s.placement;
        let mut rng = derived(s.seed, b"placement", 0);
        let cities: Vec<(f64, f64)> = (0..p.cities).map(|_| in_disc(&mut rng, p.radius_km * 0.8)).collect();
        let rural_spacing = 2.0;
        let mut positions: Vec<(f64, f64)> = Vec::with_capacity(p.gateways);
        for _ in 0..p.gateways {
            let pos = match p.layout {
                Layout::Uniform => in_disc(&mut rng, p.radius_km),
                Layout::Clustered if unit(&mut rng) < p.city_share => {
                    let c = cities[(rng.next_u64() % cities.len() as u64) as usize];
                    (c.0 + p.city_sigma_km * normal(&mut rng), c.1 + p.city_sigma_km * normal(&mut rng))
                }
                Layout::Clustered => in_disc(&mut rng, p.radius_km),
                Layout::Rural => {
                    // A few tries for a spot with room; then take the last one.
                    let mut pos = in_disc(&mut rng, p.radius_km);
                    for _ in 0..8 {
                        let close = positions
                            .iter()
                            .rev()
                            .take(64)
                            .any(|q| (q.0 - pos.0).hypot(q.1 - pos.1) < rural_spacing);
                        if !close {
                            break;
                        }
                        pos = in_disc(&mut rng, p.radius_km);
                    }
                    pos
                }
            };
            positions.push(pos);
        }
        let roles = assign_roles(s, &mut derived(s.seed, b"roles", 0));
        let a = &s.adversaries;
        let mut gateways = Vec::with_capacity(p.gateways);
        let mut ring_anchor: BTreeMap<u16, (f64, f64)> = BTreeMap::new();
        for (i, (pos, role)) in positions.iter().zip(&roles).enumerate() {
            let secret =
                keccak256([&s.seed.to_le_bytes()[..], &(i as u64).to_le_bytes()[..], b"sim-key"].concat()).0;
            let id = Keypair::from_secret(secret).gateway_id();
            let mut true_km = *pos;
            let mut asserted_km = *pos;
            match role {
                Role::LocationLiar => {
                    let angle = std::f64::consts::TAU * unit(&mut rng);
                    asserted_km = (pos.0 + a.lie_km * angle.cos(), pos.1 + a.lie_km * angle.sin());
                }
                Role::Sybil(ring) => {
                    // All of a ring sits at its first member's spot, claiming a circle around it.
                    let anchor = *ring_anchor.entry(*ring).or_insert(*pos);
                    true_km = anchor;
                    let angle = std::f64::consts::TAU * unit(&mut rng);
                    asserted_km = (
                        anchor.0 + a.sybil_spread_km * angle.cos(),
                        anchor.1 + a.sybil_spread_km * angle.sin(),
                    );
                }
                _ => {}
            }
            let (lat, lng) = to_lat_lng(p.center, asserted_km);
            let location = Location::from_lat_lng(lat, lng).map_err(|_| WorldError::Location(i))?;
            gateways.push(Gateway {
                secret,
                id,
                true_km,
                asserted_km,
                location,
                region: Region(0),
                role: *role,
            });
        }
        // Committee regions from asserted locations, as the chain's registry has them.
        let registry: Vec<(GatewayId, Location)> = gateways.iter().map(|g| (g.id, g.location)).collect();
        // One pass per resolution over the registry (the node's own rule).
        let committees = committee_regions(p.region_resolution, &registry);
        let mut regions: BTreeMap<Region, Vec<usize>> = BTreeMap::new();
        for (i, g) in gateways.iter_mut().enumerate() {
            let region = *committees.get(&g.id).ok_or(WorldError::Location(i))?;
            g.region = region;
            regions.entry(region).or_default().push(i);
        }
        for members in regions.values_mut() {
            members.sort_unstable();
        }
        let r = &s.radio;
        let bandwidth_hz = 125_000.0_f64;
        let noise_floor_dbm = -174.0 + 10.0 * bandwidth_hz.log10() + r.noise_figure_db;
        let demod_snr_db = DEMOD_SNR_DB[usize::from(r.spreading_factor.clamp(7, 12) - 7)];
        let links = radio_links(s, &gateways, noise_floor_dbm + demod_snr_db);
        Ok(World { gateways, regions, links, noise_floor_dbm, demod_snr_db })
    }

    /// Mean number of gateways hearing a beacon.
    pub fn mean_hearers(&self) -> f64 {
        let total: usize = self.links.iter().map(Vec::len).sum();
        total as f64 / self.gateways.len().max(1) as f64
    }
}

fn assign_roles(s: &Scenario, rng: &mut Rng) -> Vec<Role> {
    let n = s.placement.gateways;
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    let a = &s.adversaries;
    let mut roles = vec![Role::Honest; n];
    let mut next = order.into_iter();
    let mut give = |count: usize, role: Role| {
        for _ in 0..count {
            if let Some(i) = next.next() {
                roles[i] = role;
            }
        }
    };
    give(a.forged_witnesses, Role::ForgedWitness);
    give(a.location_liars, Role::LocationLiar);
    for ring in 0..a.sybil_rings {
        give(a.sybil_ring_size, Role::Sybil(ring as u16));
    }
    give(a.equivocators, Role::Equivocator);
    give(a.silent_leaders, Role::SilentLeader);
    give(a.spammers, Role::Spammer);
    roles
}

/// Who hears whom: mean RSSI from free-space path loss, clutter and a
/// per-link log-normal shadowing (the same both ways), kept when a reception
/// at the best fading could demodulate.
///
/// Candidates come from a grid of cells one range wide (the 3 × 3 cells
/// around a gateway). A link's mean RSSI is the same both ways, so each pair
/// is drawn once and, when kept, listed for both ends. Each list is in the
/// order of a scan of the 3 × 3 cells (column by column, then by index within
/// a cell): the order the engine draws the receivers' fading in.
fn radio_links(s: &Scenario, gateways: &[Gateway], threshold_dbm: f64) -> Vec<Vec<Link>> {
    let r = &s.radio;
    let f = f64::from(r.frequency_hz);
    let eirp = r.tx_power_dbm + 2.0 * r.antenna_gain_dbi - r.clutter_db;
    // Farthest a link can reach: shadowing at 4 sigma and the best fading.
    let best = eirp + 4.0 * r.shadowing_sigma_db + r.fading_db - threshold_dbm;
    let range_km = (10f64.powf((best + 147.55 - 20.0 * f.log10()) / 20.0) / 1000.0).clamp(0.01, 100.0);
    let cell = range_km;
    let mut grid: BTreeMap<(i64, i64), Vec<u32>> = BTreeMap::new();
    let key = |p: (f64, f64)| ((p.0 / cell).floor() as i64, (p.1 / cell).floor() as i64);
    for (i, g) in gateways.iter().enumerate() {
        grid.entry(key(g.true_km)).or_default().push(i as u32);
    }
    // Per hearer, (scan rank of its cell as seen from the beaconer, link).
    let mut ranked: Vec<Vec<(u8, Link)>> = vec![Vec::new(); gateways.len()];
    for (a, g) in gateways.iter().enumerate() {
        let (cx, cy) = key(g.true_km);
        for dx in -1..=1i64 {
            for dy in -1..=1i64 {
                let Some(cands) = grid.get(&(cx + dx, cy + dy)) else { continue };
                // Cell ranks in the scan order; the other end sees this cell at the opposite offset.
                let rank = ((dx + 1) * 3 + dy + 1) as u8;
                let back = ((1 - dx) * 3 + 1 - dy) as u8;
                for &b in cands {
                    let b_us = b as usize;
                    if b_us <= a {
                        continue;
                    }
                    let h = &gateways[b_us];
                    let d = (g.true_km.0 - h.true_km.0).hypot(g.true_km.1 - h.true_km.1);
                    if d > range_km {
                        continue;
                    }
                    let mut link_rng = derived(s.seed, b"shadow", (a as u64) << 32 | b as u64);
                    let shadow = r.shadowing_sigma_db * normal(&mut link_rng);
                    let mean = eirp - fspl_db(d, f) + shadow;
                    if mean + r.fading_db >= threshold_dbm {
                        let mean_rssi_dbm = mean as f32;
                        ranked[a].push((rank, Link { to: b, mean_rssi_dbm }));
                        ranked[b_us].push((back, Link { to: a as u32, mean_rssi_dbm }));
                    }
                }
            }
        }
    }
    ranked
        .into_iter()
        .map(|mut list| {
            list.sort_unstable_by_key(|(rank, link)| (*rank, link.to));
            list.into_iter().map(|(_, link)| link).collect()
        })
        .collect()
}
