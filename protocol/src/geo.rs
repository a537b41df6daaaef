//! Locations and regions as H3 cells.
//!
//! A gateway asserts its location as an H3 cell at [`Location::RESOLUTION`]; a
//! region is the H3 cell at the network's configured region resolution that
//! contains it. Both travel as the 64-bit H3 index, so a peer can send any `u64`:
//! [`Location::check`] and [`Region::check`] turn raw indexes into values the
//! rest of the crate can trust.
//!
//! # Determinism
//!
//! Distances feed witness validity, which the committee agrees on, so two nodes
//! must compute the same metres from the same cells. h3o is built without its
//! `std` feature (see the workspace `Cargo.toml`): its trigonometry then comes
//! from the pure-Rust `libm` port, not from the platform's C library whose
//! last-bit results differ between architectures and versions. Rust never fuses
//! a multiply and an add on its own, and every operation left (IEEE-754 `+ − × ÷
//! √`, correctly rounded `fma`) has one correct result. [`distance_m`] then
//! rounds down to whole metres, and the rules compare whole metres.

use bincode::{Decode, Encode};
use h3o::{CellIndex, LatLng, Resolution};

/// A gateway's asserted location: an H3 cell index at resolution 12.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct Location(pub u64);

/// A region: an H3 cell index at the network's region resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct Region(pub u64);

/// Why coordinates or an index are not a valid [`Location`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LocationError {
    /// Latitude outside −90..=90 degrees, longitude outside −180..=180, or not finite.
    #[error("({lat}, {lng}) are not coordinates: latitude must be within ±90°, longitude within ±180°")]
    InvalidCoordinates {
        /// The latitude given, degrees.
        lat: f64,
        /// The longitude given, degrees.
        lng: f64,
    },
    /// The index is not an H3 cell index.
    #[error("{0:#x} is not an H3 cell index")]
    NotACell(u64),
    /// The cell is not at [`Location::RESOLUTION`].
    #[error("cell {index:#x} has resolution {found}; locations are resolution {}", Location::RESOLUTION)]
    WrongResolution {
        /// The index.
        index: u64,
        /// Its resolution.
        found: u8,
    },
}

/// Why an index or a resolution is not a valid [`Region`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RegionError {
    /// The resolution is outside [`Region::MIN_RESOLUTION`]..=[`Region::MAX_RESOLUTION`].
    #[error(
        "region resolution {0} is outside {min}..={max}",
        min = Region::MIN_RESOLUTION,
        max = Region::MAX_RESOLUTION
    )]
    InvalidResolution(u8),
    /// The index is not an H3 cell index.
    #[error("{0:#x} is not an H3 cell index")]
    NotACell(u64),
    /// The region is already at [`Region::MIN_RESOLUTION`] and has no parent regions may merge into.
    #[error("region {0:#x} is at the coarsest region resolution and has no parent region")]
    NoParent(u64),
    /// The location is not a valid location.
    #[error("invalid location: {0}")]
    Location(#[from] LocationError),
}

impl Location {
    /// Resolution of asserted locations: a res-12 hexagon has an edge of about
    /// 10 m, finer than a consumer GPS fix and coarse enough not to publish
    /// the exact house of an operator.
    pub const RESOLUTION: Resolution = Resolution::Twelve;

    /// The location (res-12 cell) containing the point at `lat`, `lng` degrees (WGS84).
    pub fn from_lat_lng(lat: f64, lng: f64) -> Result<Location, LocationError> {
        let in_range = (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lng);
        let point = LatLng::new(lat, lng).ok().filter(|_| in_range);
        let point = point.ok_or(LocationError::InvalidCoordinates { lat, lng })?;
        Ok(Location(u64::from(point.to_cell(Self::RESOLUTION))))
    }

    /// Checks that a raw index is an H3 cell at [`Location::RESOLUTION`].
    pub fn check(index: u64) -> Result<Location, LocationError> {
        Location(index).cell().map(|_| Location(index))
    }

    /// The H3 cell, when the index is a cell at [`Location::RESOLUTION`].
    pub fn cell(self) -> Result<CellIndex, LocationError> {
        let cell = CellIndex::try_from(self.0).map_err(|_| LocationError::NotACell(self.0))?;
        if cell.resolution() != Self::RESOLUTION {
            return Err(LocationError::WrongResolution { index: self.0, found: u8::from(cell.resolution()) });
        }
        Ok(cell)
    }

    /// Latitude and longitude of the cell's centre, degrees.
    pub fn lat_lng(self) -> Result<(f64, f64), LocationError> {
        let centre = LatLng::from(self.cell()?);
        Ok((centre.lat(), centre.lng()))
    }
}

/// Great-circle distance between the centres of two locations, in whole metres
/// rounded down (h3o's haversine on its mean Earth radius of 6,371.007 km).
///
/// Two gateways in the same cell are 0 m apart. See the module docs on why every
/// node computes the same value.
pub fn distance_m(a: Location, b: Location) -> Result<u64, LocationError> {
    let a = LatLng::from(a.cell()?);
    let b = LatLng::from(b.cell()?);
    // Non-negative and below half the Earth's circumference (~20,015 km), so
    // the conversion is exact after flooring; `as` saturates on anything else.
    Ok(a.distance_m(b).floor() as u64)
}

impl Region {
    /// Coarsest region resolution. A res-3 cell averages about 12,400 km², a
    /// large metropolitan area: every gateway of a region hears the region's
    /// gossip, so coarser regions would make per-node cost grow with the size
    /// of a country rather than of a neighbourhood.
    pub const MIN_RESOLUTION: u8 = 3;

    /// Finest region resolution. A res-8 cell averages about 0.74 km², a few
    /// blocks; finer regions would rarely hold the four gateways a committee
    /// needs to tolerate one fault (n ≥ 3f + 1).
    pub const MAX_RESOLUTION: u8 = 8;

    /// Checks that `resolution` is a region resolution.
    pub fn resolution_checked(resolution: u8) -> Result<Resolution, RegionError> {
        if !(Self::MIN_RESOLUTION..=Self::MAX_RESOLUTION).contains(&resolution) {
            return Err(RegionError::InvalidResolution(resolution));
        }
        Resolution::try_from(resolution).map_err(|_| RegionError::InvalidResolution(resolution))
    }

    /// The region at `resolution` that contains `location`.
    pub fn of(location: Location, resolution: u8) -> Result<Region, RegionError> {
        let resolution = Self::resolution_checked(resolution)?;
        let cell = location.cell()?;
        // A res-12 cell has a parent at every coarser resolution, and region
        // resolutions are all coarser than 12.
        let parent = cell.parent(resolution).ok_or(RegionError::InvalidResolution(u8::from(resolution)))?;
        Ok(Region(u64::from(parent)))
    }

    /// Checks that a raw index is an H3 cell at a region resolution.
    pub fn check(index: u64) -> Result<Region, RegionError> {
        Region(index).resolution().map(|_| Region(index))
    }

    /// The H3 cell, when the index is a cell at a region resolution.
    pub fn cell(self) -> Result<CellIndex, RegionError> {
        let cell = CellIndex::try_from(self.0).map_err(|_| RegionError::NotACell(self.0))?;
        Self::resolution_checked(u8::from(cell.resolution()))?;
        Ok(cell)
    }

    /// The region's resolution.
    pub fn resolution(self) -> Result<u8, RegionError> {
        self.cell().map(|cell| u8::from(cell.resolution()))
    }

    /// The region one resolution coarser that contains this one: where a region
    /// with too few gateways for a committee merges with its neighbours.
    pub fn parent(self) -> Result<Region, RegionError> {
        let cell = self.cell()?;
        let resolution = u8::from(cell.resolution());
        if resolution <= Self::MIN_RESOLUTION {
            return Err(RegionError::NoParent(self.0));
        }
        let coarser = Self::resolution_checked(resolution - 1)?;
        cell.parent(coarser).map(|p| Region(u64::from(p))).ok_or(RegionError::NoParent(self.0))
    }

    /// Whether `location` lies in this region (false when either is invalid).
    pub fn contains(self, location: Location) -> bool {
        match self.resolution() {
            Ok(resolution) => Region::of(location, resolution) == Ok(self),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(lat: f64, lng: f64) -> Location {
        Location::from_lat_lng(lat, lng).expect("valid coordinates")
    }

    #[test]
    fn from_lat_lng_gives_a_resolution_12_cell_near_the_point() {
        let loc = location(48.8584, 2.2945);
        assert_eq!(Location::check(loc.0), Ok(loc));
        let (lat, lng) = loc.lat_lng().expect("cell");
        // A res-12 cell's centre is within ~10 m (1e-4° ≈ 11 m) of any point in it.
        assert!((lat - 48.8584).abs() < 1e-4 && (lng - 2.2945).abs() < 1e-4, "{lat} {lng}");
    }

    #[test]
    fn invalid_coordinates_are_refused() {
        for (lat, lng) in [(90.0001, 0.0), (-91.0, 0.0), (0.0, 180.0001), (0.0, -181.0), (f64::NAN, 0.0)] {
            assert!(
                matches!(Location::from_lat_lng(lat, lng), Err(LocationError::InvalidCoordinates { .. })),
                "{lat} {lng}"
            );
        }
        assert!(Location::from_lat_lng(90.0, 180.0).is_ok());
        assert!(Location::from_lat_lng(-90.0, -180.0).is_ok());
    }

    #[test]
    fn check_refuses_non_cells_and_other_resolutions() {
        assert_eq!(Location::check(0), Err(LocationError::NotACell(0)));
        assert_eq!(Location::check(u64::MAX), Err(LocationError::NotACell(u64::MAX)));
        let region = Region::of(location(52.52, 13.405), 7).expect("region");
        assert_eq!(
            Location::check(region.0),
            Err(LocationError::WrongResolution { index: region.0, found: 7 })
        );
        assert!(Location(region.0).lat_lng().is_err());
    }

    #[test]
    fn distance_matches_the_haversine_of_known_points() {
        // Paris (Notre-Dame) to London (Trafalgar Square): ~343.6 km.
        let d = distance_m(location(48.8530, 2.3499), location(51.5080, -0.1281)).expect("cells");
        assert!((343_000..345_000).contains(&d), "{d}");
        // One degree of latitude on the mean sphere is ~111.2 km.
        let d = distance_m(location(10.0, 20.0), location(11.0, 20.0)).expect("cells");
        assert!((111_100..111_300).contains(&d), "{d}");
    }

    #[test]
    fn distance_is_symmetric_and_zero_within_a_cell() {
        let a = location(-33.8688, 151.2093);
        let b = location(-33.8700, 151.2100);
        assert_eq!(distance_m(a, a), Ok(0));
        assert_eq!(distance_m(a, b), distance_m(b, a));
        assert!(distance_m(Location(0), a).is_err());
    }

    #[test]
    fn region_of_contains_its_location_and_parent_is_one_step_coarser() {
        let loc = location(37.7749, -122.4194);
        let region = Region::of(loc, 7).expect("region");
        assert_eq!(region.resolution(), Ok(7));
        assert!(region.contains(loc));
        assert!(!region.contains(location(34.0522, -118.2437)));
        let parent = region.parent().expect("parent");
        assert_eq!(parent.resolution(), Ok(6));
        assert_eq!(Region::of(loc, 6), Ok(parent));
        assert!(parent.contains(loc));
    }

    #[test]
    fn region_resolution_bounds_are_enforced() {
        let loc = location(1.0, 1.0);
        assert_eq!(Region::of(loc, 2), Err(RegionError::InvalidResolution(2)));
        assert_eq!(Region::of(loc, 9), Err(RegionError::InvalidResolution(9)));
        assert!(Region::of(loc, 3).is_ok());
        assert!(Region::of(loc, 8).is_ok());
        let coarsest = Region::of(loc, 3).expect("region");
        assert_eq!(coarsest.parent(), Err(RegionError::NoParent(coarsest.0)));
        assert!(Region::of(loc, 4).expect("region").parent().is_ok());
    }

    #[test]
    fn region_check_refuses_locations_and_garbage() {
        let loc = location(1.0, 1.0);
        assert_eq!(Region::check(loc.0), Err(RegionError::InvalidResolution(12)));
        assert_eq!(Region::check(7), Err(RegionError::NotACell(7)));
        assert_eq!(Region::of(Location(7), 5), Err(RegionError::Location(LocationError::NotACell(7))));
    }
}
