//! Who decides a region's epochs, when a gateway beacons, and what an anchor signs.

use std::collections::{BTreeMap, BTreeSet};

use meshd_protocol::codec::MAX_COMMITTEE;
use meshd_protocol::geo::{Location, Region};
use meshd_protocol::merkle::MerkleTree;
use meshd_protocol::message::Certificate;
use meshd_protocol::signature;
use meshd_protocol::{GatewayId, Hash32, hash::keccak256_concat, keccak256};

/// Fewest members a committee has. Below four, BFT tolerates no fault at all
/// (f = ⌊(n − 1) / 3⌋ = 0), so a region that small joins its parent H3 cell.
pub const MIN_COMMITTEE: usize = 4;

/// A committee: registered gateways sorted by id, at most [`MAX_COMMITTEE`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committee {
    members: Vec<GatewayId>,
}

impl Committee {
    /// The committee of these members (sorted, deduplicated). When more than
    /// [`MAX_COMMITTEE`] register, the sample is the members with the smallest
    /// `keccak256(seed ‖ id)`: deterministic, and not chosen by the members.
    pub fn new(members: impl IntoIterator<Item = GatewayId>, seed: &Hash32) -> Committee {
        let set: BTreeSet<GatewayId> = members.into_iter().collect();
        let mut members: Vec<GatewayId> = set.into_iter().collect();
        if members.len() > MAX_COMMITTEE {
            members.sort_by_key(|m| keccak256_concat(&[&seed.0, &m.0]));
            members.truncate(MAX_COMMITTEE);
            members.sort();
        }
        Committee { members }
    }

    /// The members, sorted.
    pub fn members(&self) -> &[GatewayId] {
        &self.members
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The index of a member.
    pub fn index(&self, id: &GatewayId) -> Option<usize> {
        self.members.binary_search(id).ok()
    }

    /// The hash summaries carry: keccak256 of the sorted member ids.
    pub fn hash(&self) -> Hash32 {
        let mut bytes = Vec::with_capacity(self.members.len() * 32);
        for m in &self.members {
            bytes.extend_from_slice(&m.0);
        }
        keccak256(bytes)
    }
}

/// The region whose committee a gateway in `home` joins.
///
/// Cells are settled from the finest resolution (`home`'s) up: at each
/// resolution, every cell holding at least [`MIN_COMMITTEE`] registered
/// gateways that are not yet settled becomes the committee of those
/// gateways; the others move on to the parent cell. So a small cell's
/// gateways join the parent cell's committee together with the other small
/// cells' gateways there, while a sibling cell with four or more keeps its
/// own committee and is not counted again above. `home`'s gateway ends in
/// the first cell that settles it, or in the coarsest region,
/// [`Region::MIN_RESOLUTION`], when none does.
///
/// Every gateway computes the same answer from the same registry, so the
/// gateways of small cells meet in one committee; their reports carry that
/// region.
pub fn committee_region(home: Region, registry: &[(GatewayId, Location)]) -> Region {
    let Ok(mut level) = home.resolution() else { return home };
    let mut region = home;
    let mut unsettled: Vec<Location> = registry.iter().map(|(_, at)| *at).collect();
    loop {
        let mut counts: BTreeMap<Region, usize> = BTreeMap::new();
        for at in &unsettled {
            if let Ok(cell) = Region::of(*at, level) {
                *counts.entry(cell).or_default() += 1;
            }
        }
        if counts.get(&region).copied().unwrap_or(0) >= MIN_COMMITTEE {
            return region;
        }
        unsettled.retain(|at| {
            Region::of(*at, level).is_ok_and(|cell| counts.get(&cell).copied().unwrap_or(0) < MIN_COMMITTEE)
        });
        match region.parent() {
            Ok(parent) if level > Region::MIN_RESOLUTION => {
                region = parent;
                level -= 1;
            }
            _ => return region,
        }
    }
}

/// Every registered gateway's committee region, as [`committee_region`]
/// computes it for each one's home cell at `resolution`, in one pass over
/// the registry per resolution (a registry of thousands costs a few
/// milliseconds, not one pass per gateway). Gateways whose location has no
/// region at `resolution` are left out.
pub fn committee_regions(resolution: u8, registry: &[(GatewayId, Location)]) -> BTreeMap<GatewayId, Region> {
    let mut settled = BTreeMap::new();
    let mut unsettled: Vec<(GatewayId, Region)> =
        registry.iter().filter_map(|(id, at)| Region::of(*at, resolution).ok().map(|r| (*id, r))).collect();
    while !unsettled.is_empty() {
        let mut counts: BTreeMap<Region, usize> = BTreeMap::new();
        for (_, cell) in &unsettled {
            *counts.entry(*cell).or_default() += 1;
        }
        let mut next = Vec::with_capacity(unsettled.len());
        for (id, cell) in unsettled {
            let top = cell.resolution().map_or(true, |level| level <= Region::MIN_RESOLUTION);
            match cell.parent() {
                Ok(parent) if counts.get(&cell).copied().unwrap_or(0) < MIN_COMMITTEE && !top => {
                    next.push((id, parent));
                }
                _ => {
                    settled.insert(id, cell);
                }
            }
        }
        unsettled = next;
    }
    settled
}

/// The members of the committee of `region`: the gateways whose committee
/// region it is ([`committee_regions`]), sorted.
pub fn region_members(region: Region, resolution: u8, registry: &[(GatewayId, Location)]) -> Vec<GatewayId> {
    committee_regions(resolution, registry)
        .into_iter()
        .filter(|(_, r)| *r == region)
        .map(|(id, _)| id)
        .collect()
}

/// Share of an epoch, from its start, in which no beacon is sent: the
/// previous epoch is decided during its grace period at the start of this
/// one, and its summary hash is the beacon's entropy. A quarter leaves the
/// decision a margin of several consensus rounds.
pub const BEACON_WINDOW_START_DIVISOR: u64 = 4;

/// When a gateway transmits its beacon in an epoch: a moment in the last
/// three quarters of the epoch (see [`BEACON_WINDOW_START_DIVISOR`]) that
/// nobody knows before the previous summary is final, since it is derived
/// from that summary's hash and the gateway's key.
pub fn beacon_time_ms(
    previous: &Hash32,
    gateway: &GatewayId,
    epoch: u64,
    start_ms: u64,
    length_ms: u64,
) -> u64 {
    let skip = length_ms / BEACON_WINDOW_START_DIVISOR;
    let window = (length_ms - skip).max(1);
    let digest = keccak256_concat(&[b"meshd.beacon-time.v1", &previous.0, &gateway.0, &epoch.to_le_bytes()]);
    let mut word = [0u8; 8];
    word.copy_from_slice(&digest.0[..8]);
    start_ms + skip + u64::from_le_bytes(word) % window
}

/// The commit signatures of `certificate` (for the summary hashing to
/// `summary_hash`) that count for `committee`: the first signature of each
/// distinct member, checked in one batch (a certificate carries up to 2f+1
/// of them; the batch costs about half of checking them one by one, with
/// the same verdicts). Returns how many verify and how many were checked.
pub fn valid_commit_signatures(
    network: &str,
    committee: &Committee,
    certificate: &Certificate,
    summary_hash: &Hash32,
) -> (usize, usize) {
    let bytes = Certificate::sign_bytes(
        network,
        certificate.region,
        certificate.epoch,
        certificate.round,
        summary_hash,
    );
    let mut seen = BTreeSet::new();
    let items: Vec<signature::Item<'_>> = certificate
        .signatures
        .iter()
        .filter(|s| committee.index(&s.signer).is_some() && seen.insert(s.signer))
        .map(|s| signature::Item { signer: &s.signer.0, message: &bytes, signature: &s.signature })
        .collect();
    let valid = signature::verify_batch(&items).iter().filter(|verdict| verdict.is_ok()).count();
    (valid, items.len())
}

/// Merkle root (OpenZeppelin `StandardMerkleTree`) over summary leaves.
pub fn anchor_root(leaves: &[Hash32]) -> Hash32 {
    MerkleTree::new(leaves.iter().copied()).root()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> GatewayId {
        GatewayId([b; 32])
    }

    #[test]
    fn a_committee_is_sorted_and_deduplicated() {
        let c = Committee::new([id(3), id(1), id(3), id(2)], &Hash32::ZERO);
        assert_eq!(c.members(), &[id(1), id(2), id(3)]);
        assert_eq!(c.index(&id(2)), Some(1));
    }

    #[test]
    fn a_large_registry_is_sampled_down_to_the_committee_limit() {
        let c = Committee::new((0..=200u8).map(id), &Hash32::ZERO);
        assert_eq!(c.len(), MAX_COMMITTEE);
    }

    #[test]
    fn a_region_with_fewer_than_four_gateways_joins_its_parent_cell() {
        let here = Location::from_lat_lng(48.85, 2.35).expect("location");
        let home = Region::of(here, 8).expect("region");
        let three: Vec<_> = (0..3).map(|i| (id(i), here)).collect();
        let region = committee_region(home, &three);
        assert_ne!(region, home);
        assert_eq!(region.resolution().ok(), Some(Region::MIN_RESOLUTION));
        let four: Vec<_> = (0..4).map(|i| (id(i), here)).collect();
        assert_eq!(committee_region(home, &four), home);
    }

    #[test]
    fn small_cells_meet_in_the_parent_without_their_large_siblings() {
        // Five gateways in one resolution-8 cell: a committee of their own.
        // Two gateways in each of two sibling cells: they meet in the parent,
        // four of them, without the five counted again.
        let here = Location::from_lat_lng(48.85, 2.35).expect("location");
        let big = Region::of(here, 8).expect("region");
        let parent = big.parent().expect("parent");
        // Two other resolution-8 cells of the same parent, found by walking a
        // small grid around `here` (cells are about 0.9 km across).
        let mut siblings: Vec<(Region, Location)> = Vec::new();
        for step in 1..400 {
            let (dlat, dlng) = (f64::from(step % 20) * 0.002, f64::from(step / 20) * 0.002);
            let Ok(at) = Location::from_lat_lng(48.85 + dlat - 0.02, 2.35 + dlng - 0.02) else { continue };
            let Ok(cell) = Region::of(at, 8) else { continue };
            if cell != big && cell.parent().ok() == Some(parent) && siblings.iter().all(|(c, _)| *c != cell) {
                siblings.push((cell, at));
            }
        }
        assert!(siblings.len() >= 2, "a resolution-7 cell has seven children");
        let centre = |i: usize| siblings[i].1;
        let siblings: Vec<Region> = siblings.iter().map(|(c, _)| *c).collect();
        let mut registry: Vec<(GatewayId, Location)> = (0..5).map(|i| (id(i), here)).collect();
        registry.extend((5..7).map(|i| (id(i), centre(0))));
        registry.extend((7..9).map(|i| (id(i), centre(1))));
        assert_eq!(committee_region(big, &registry), big);
        assert_eq!(committee_region(siblings[0], &registry), parent);
        assert_eq!(committee_region(siblings[1], &registry), parent);
        // With one small sibling only, two gateways are too few in the parent:
        // they go further up, still without the five.
        let fewer: Vec<_> = registry[..7].to_vec();
        let region = committee_region(siblings[0], &fewer);
        assert_ne!(region, parent);
        assert_eq!(region.resolution().ok(), Some(Region::MIN_RESOLUTION));
    }

    #[test]
    fn every_gateways_committee_region_is_the_one_each_computes_for_itself() {
        // Clusters of 1 to 6 gateways scattered over a few resolution-5
        // cells: some settle at 8, some climb, some meet their neighbours.
        let mut registry: Vec<(GatewayId, Location)> = Vec::new();
        let mut n = 0u8;
        for cluster in 0..12u8 {
            for k in 0..(cluster % 6 + 1) {
                let lat = 48.80 + f64::from(cluster) * 0.013 + f64::from(k) * 0.0004;
                let lng = 2.30 + f64::from(cluster % 4) * 0.03;
                registry.push((id(n), Location::from_lat_lng(lat, lng).expect("location")));
                n += 1;
            }
        }
        let all = committee_regions(8, &registry);
        assert_eq!(all.len(), registry.len());
        for (gateway, at) in &registry {
            let home = Region::of(*at, 8).expect("region");
            assert_eq!(all[gateway], committee_region(home, &registry), "{gateway:?}");
        }
        let region = all[&registry[0].0];
        let members = region_members(region, 8, &registry);
        assert!(members.contains(&registry[0].0));
        assert!(members.iter().all(|m| all[m] == region));
    }

    #[test]
    fn the_beacon_time_lies_in_the_window_and_depends_on_the_entropy() {
        let a = beacon_time_ms(&Hash32([1; 32]), &id(1), 7, 1_000, 60_000);
        let b = beacon_time_ms(&Hash32([2; 32]), &id(1), 7, 1_000, 60_000);
        assert!((16_000..61_000).contains(&a));
        assert_ne!(a, b);
    }
}
