//! Locations and regions as H3 cells.
//!
//! A gateway asserts its location as an H3 cell at [`Location::RESOLUTION`]; a
//! region is the H3 cell at the network's configured region resolution that
//! contains it. Both travel as the 64-bit H3 index.

use bincode::{Decode, Encode};

/// A gateway's asserted location: an H3 cell index at resolution 12.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct Location(pub u64);

impl Location {
    /// Resolution of asserted locations: a res-12 hexagon has an edge of about
    /// 10 m, finer than a consumer GPS fix and coarse enough not to publish
    /// the exact house of an operator.
    pub const RESOLUTION: h3o::Resolution = h3o::Resolution::Twelve;
}

/// A region: an H3 cell index at the network's region resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct Region(pub u64);
