//! Identities: [`GatewayId`] and [`MeterId`], both ed25519 public keys.
//!
//! One text form is used everywhere (logs, config, JSON, CLI): the base58btc
//! string of the libp2p `PeerId` of the key, e.g. `12D3KooW…`. A gateway's id
//! and its libp2p `PeerId` are therefore the same string, and an operator can
//! match a gateway in `meshd status` with the peer in a libp2p log. Meters use
//! the same form; they are never libp2p peers, the form is only shared so that
//! one parser serves every key.
//!
//! The encoding is `base58btc(multihash)` where the multihash is the identity
//! hash (`0x00`, length `0x24`) of the protobuf `PublicKey { Type = Ed25519 (1),
//! Data = key }`, i.e. the bytes `00 24 08 01 12 20 ‖ key`.

use std::fmt;
use std::str::FromStr;

use bincode::{Decode, Encode};
use ed25519_dalek::VerifyingKey;

/// Bytes before the key in the `PeerId` multihash of an ed25519 key: identity
/// multihash code 0x00, digest length 36, then the protobuf header
/// `field 1 (KeyType) = 1 (Ed25519)` and `field 2 (Data), length 32`.
const PEER_ID_PREFIX: [u8; 6] = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20];

/// Why a text or byte string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The text is not base58btc.
    #[error("{0:?} is not base58 text; ids look like 12D3KooW…")]
    NotBase58(String),
    /// The decoded bytes are not the `PeerId` multihash of an ed25519 key.
    #[error("{0:?} is not the id of an ed25519 key (expected a 12D3KooW… peer id)")]
    NotEd25519(String),
    /// The 32 bytes are not a point on the curve.
    #[error("the key bytes are not a valid ed25519 public key")]
    InvalidKey,
    /// The key is of small order: any signature would verify for it.
    #[error("the key is a weak (small-order) ed25519 key; no signature by it can be trusted")]
    WeakKey,
}

macro_rules! key_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The raw 32 bytes of the public key.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// The key as an ed25519-dalek verifying key, refusing bytes that
            /// are not a point and weak (small-order) keys.
            pub fn verifying_key(&self) -> Result<VerifyingKey, IdError> {
                let key = VerifyingKey::from_bytes(&self.0).map_err(|_| IdError::InvalidKey)?;
                if key.is_weak() {
                    return Err(IdError::WeakKey);
                }
                Ok(key)
            }
        }

        impl From<VerifyingKey> for $name {
            fn from(key: VerifyingKey) -> Self {
                $name(key.to_bytes())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut bytes = [0u8; 38];
                bytes[..6].copy_from_slice(&PEER_ID_PREFIX);
                bytes[6..].copy_from_slice(&self.0);
                f.write_str(&bs58::encode(bytes).into_string())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                // 38 bytes are at most 52 base58 digits; refuse long input before decoding.
                if s.len() > 60 {
                    return Err(IdError::NotEd25519(s.chars().take(60).collect()));
                }
                let bytes = bs58::decode(s)
                    .into_vec()
                    .map_err(|_| IdError::NotBase58(s.to_owned()))?;
                if bytes.len() != 38 || bytes[..6] != PEER_ID_PREFIX {
                    return Err(IdError::NotEd25519(s.to_owned()));
                }
                let mut key = [0u8; 32];
                key.copy_from_slice(&bytes[6..]);
                Ok($name(key))
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

key_id!(
    /// A gateway: its ed25519 public key, which is also its libp2p identity.
    GatewayId
);

key_id!(
    /// An energy meter: the ed25519 public key that signs its readings.
    MeterId
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keypair;

    #[test]
    fn gateway_id_text_is_a_libp2p_ed25519_peer_id() {
        let id = Keypair::from_secret([7; 32]).gateway_id();
        let text = id.to_string();
        assert!(text.starts_with("12D3KooW"), "{text}");
        assert_eq!(text.parse::<GatewayId>(), Ok(id));
    }

    #[test]
    fn ids_refuse_other_text() {
        assert!(matches!("hello!".parse::<GatewayId>(), Err(IdError::NotBase58(_))));
        assert!(matches!("3yZe7d".parse::<MeterId>(), Err(IdError::NotEd25519(_))));
        assert!("x".repeat(500).parse::<MeterId>().is_err());
    }

    #[test]
    fn weak_keys_are_refused() {
        // The identity point (0, 1) is of small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(GatewayId(identity).verifying_key(), Err(IdError::WeakKey));
    }

    #[test]
    fn serde_uses_the_text_form() {
        let id = Keypair::from_secret([9; 32]).gateway_id();
        let json = serde_json::to_string(&id).expect("serialize");
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<GatewayId>(&json).expect("parse"), id);
    }
}
