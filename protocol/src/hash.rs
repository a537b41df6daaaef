//! keccak256 and the 32-byte hash type used for every id and root.
//!
//! meshd uses one hash function everywhere: keccak256, the hash of the EVM.
//! Message ids, report ids, summary hashes and Merkle roots can then be checked
//! on-chain without translation.

use std::fmt;
use std::str::FromStr;

use bincode::{Decode, Encode};
use sha3::{Digest, Keccak256};

/// A 32-byte keccak256 digest: message ids, report ids, Merkle roots, summary hashes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Encode, Decode)]
pub struct Hash32(pub [u8; 32]);

impl Hash32 {
    /// The all-zero hash: the "previous summary" of the first epoch of a region.
    pub const ZERO: Hash32 = Hash32([0; 32]);

    /// The bytes of the digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Hash32 {
    /// `0x`-prefixed lowercase hex, the form Solidity tooling prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a text could not be read as a [`Hash32`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected 32 bytes as 64 hex digits (optionally 0x-prefixed), got {0:?}")]
pub struct ParseHashError(pub String);

impl FromStr for Hash32 {
    type Err = ParseHashError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.strip_prefix("0x").unwrap_or(s);
        let mut out = [0u8; 32];
        hex::decode_to_slice(digits, &mut out).map_err(|_| ParseHashError(s.to_owned()))?;
        Ok(Hash32(out))
    }
}

impl serde::Serialize for Hash32 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Hash32 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// keccak256 of one byte string.
pub fn keccak256(data: impl AsRef<[u8]>) -> Hash32 {
    Hash32(Keccak256::digest(data.as_ref()).into())
}

/// keccak256 of the concatenation of several byte strings, without copying them.
pub fn keccak256_concat(parts: &[&[u8]]) -> Hash32 {
    let mut hasher = Keccak256::new();
    for part in parts {
        hasher.update(part);
    }
    Hash32(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keccak256_matches_the_evm_empty_string_hash() {
        // keccak256("") as every EVM computes it.
        assert_eq!(
            keccak256([]).to_string(),
            "0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
        );
    }

    #[test]
    fn concat_equals_hash_of_concatenation() {
        assert_eq!(keccak256_concat(&[b"ab", b"c"]), keccak256(b"abc"));
    }

    #[test]
    fn text_form_round_trips_with_and_without_prefix() {
        let h = keccak256(b"meshd");
        assert_eq!(h.to_string().parse::<Hash32>(), Ok(h));
        assert_eq!(h.to_string()[2..].parse::<Hash32>(), Ok(h));
        assert!("0x1234".parse::<Hash32>().is_err());
    }
}
