//! Secret keys of a gateway or meter, and the text format of a key file.
//!
//! A gateway holds two keys:
//! - an ed25519 [`Keypair`]: its identity ([`GatewayId`], libp2p `PeerId`), which
//!   signs every envelope it sends;
//! - a secp256k1 [`AnchorKey`]: it signs anchors, checked on-chain with
//!   `ecrecover` (the EVM has no ed25519 precompile).
//!
//! Both live in one key file ([`KeyFile`]) so an operator has one secret to back
//! up. This module only turns keys into text and back; creating the file with
//! mode 0600 and refusing readable files is the daemon's job (it owns the IO).
//! Randomness is an input: keys are made from 32 secret bytes the caller drew.

use std::fmt;

use ed25519_dalek::{Signer, SigningKey};
use k256::ecdsa::SigningKey as Secp256k1SigningKey;
use zeroize::Zeroizing;

use crate::hash::keccak256;
use crate::id::{GatewayId, MeterId};

/// An ed25519 signing key: a gateway's identity or a meter's key.
#[derive(Clone)]
pub struct Keypair {
    secret: SigningKey,
}

impl Keypair {
    /// The keypair of 32 secret bytes (an ed25519 seed) drawn by the caller.
    pub fn from_secret(secret: [u8; 32]) -> Self {
        let secret = Zeroizing::new(secret);
        Keypair { secret: SigningKey::from_bytes(&secret) }
    }

    /// The 32 secret seed bytes, for writing a key file.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.secret.to_bytes())
    }

    /// This key as a gateway id.
    pub fn gateway_id(&self) -> GatewayId {
        GatewayId(self.secret.verifying_key().to_bytes())
    }

    /// This key as a meter id.
    pub fn meter_id(&self) -> MeterId {
        MeterId(self.secret.verifying_key().to_bytes())
    }

    /// The raw 32 public key bytes.
    pub fn public_bytes(&self) -> [u8; 32] {
        self.secret.verifying_key().to_bytes()
    }

    /// An ed25519 signature (RFC 8032, deterministic) over `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.secret.sign(message).to_bytes()
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({})", self.gateway_id())
    }
}

/// A 20-byte EVM address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, bincode::Encode, bincode::Decode)]
pub struct EvmAddress(pub [u8; 20]);

impl fmt::Display for EvmAddress {
    /// EIP-55 mixed-case checksummed hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lower = hex::encode(self.0);
        let hash = keccak256(lower.as_bytes());
        f.write_str("0x")?;
        for (i, c) in lower.chars().enumerate() {
            let nibble = (hash.0[i / 2] >> (if i % 2 == 0 { 4 } else { 0 })) & 0x0f;
            if c.is_ascii_alphabetic() && nibble >= 8 {
                write!(f, "{}", c.to_ascii_uppercase())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for EvmAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A secp256k1 key that signs anchors; its address is what the chain checks.
#[derive(Clone)]
pub struct AnchorKey {
    secret: Secp256k1SigningKey,
}

impl AnchorKey {
    /// The key of 32 secret bytes, or `None` when they are not a valid scalar
    /// (zero or not below the curve order: the caller draws again).
    pub fn from_secret(secret: [u8; 32]) -> Option<Self> {
        let secret = Zeroizing::new(secret);
        Secp256k1SigningKey::from_slice(secret.as_slice()).ok().map(|secret| AnchorKey { secret })
    }

    /// The 32 secret bytes, for writing a key file.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.secret.to_bytes().into())
    }

    /// The EVM address of the key: the last 20 bytes of the keccak256 of the
    /// uncompressed public key without its `0x04` tag.
    pub fn address(&self) -> EvmAddress {
        let point = self.secret.verifying_key().to_encoded_point(false);
        let hash = keccak256(&point.as_bytes()[1..]);
        let mut address = [0u8; 20];
        address.copy_from_slice(&hash.0[12..]);
        EvmAddress(address)
    }

    /// A recoverable signature `(r ‖ s ‖ v)` over a 32-byte digest (an EIP-712
    /// digest), with low `s` and `v` in {27, 28} as `ecrecover` expects.
    pub fn sign_digest(&self, digest: &[u8; 32]) -> Result<[u8; 65], AnchorSignError> {
        let (signature, recovery) =
            self.secret.sign_prehash_recoverable(digest).map_err(|_| AnchorSignError)?;
        let mut out = [0u8; 65];
        out[..64].copy_from_slice(&signature.to_bytes());
        out[64] = 27 + recovery.to_byte();
        Ok(out)
    }
}

/// The secp256k1 library refused to sign a digest (it does so only for keys
/// that `AnchorKey::from_secret` already refuses).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("secp256k1 signing failed")]
pub struct AnchorSignError;

impl fmt::Debug for AnchorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AnchorKey({})", self.address())
    }
}

/// Why a key file's text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// A line is neither a comment nor `name = "hex"`.
    #[error("line {line}: expected `ed25519 = \"<64 hex digits>\"` or `secp256k1 = \"<64 hex digits>\"`")]
    Syntax {
        /// 1-based line number.
        line: usize,
    },
    /// A key name other than `ed25519` and `secp256k1`.
    #[error("line {line}: unknown key {name:?}; a key file holds only `ed25519` and `secp256k1`")]
    UnknownKey {
        /// 1-based line number.
        line: usize,
        /// The name found.
        name: String,
    },
    /// A key's value is not 32 bytes of hex.
    #[error("line {line}: the value of `{name}` must be 64 hex digits (32 bytes)")]
    BadValue {
        /// 1-based line number.
        line: usize,
        /// The key's name.
        name: &'static str,
    },
    /// The same key appears twice.
    #[error("line {line}: `{name}` appears twice")]
    Duplicate {
        /// 1-based line number.
        line: usize,
        /// The key's name.
        name: &'static str,
    },
    /// A key is missing.
    #[error("the key file has no `{0}` line")]
    Missing(&'static str),
    /// The secp256k1 secret is zero or not below the curve order.
    #[error("the `secp256k1` value is not a valid secp256k1 secret key")]
    InvalidAnchorKey,
    /// The file is far larger than a key file can be.
    #[error("the key file is {0} bytes; a key file is well under {max} bytes", max = KeyFile::MAX_LEN)]
    TooLarge(usize),
}

/// The keys of one gateway, as stored in its key file.
///
/// The text format is a small TOML subset, one key per line, with comments:
///
/// ```text
/// # meshd gateway keys — secret: keep this file mode 0600.
/// ed25519 = "<64 hex digits: the ed25519 seed>"
/// secp256k1 = "<64 hex digits: the secp256k1 secret scalar>"
/// ```
#[derive(Clone, Debug)]
pub struct KeyFile {
    /// The identity key.
    pub identity: Keypair,
    /// The anchor-signing key.
    pub anchor: AnchorKey,
}

impl KeyFile {
    /// Longest key file accepted: the two keys and their comments fit in well
    /// under 1 KiB; anything much larger is not a key file.
    pub const MAX_LEN: usize = 4096;

    /// Reads a key file's text.
    pub fn parse(text: &str) -> Result<Self, KeyFileError> {
        if text.len() > Self::MAX_LEN {
            return Err(KeyFileError::TooLarge(text.len()));
        }
        let mut identity = None;
        let mut anchor = None;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw.trim();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            let (name, value) = content.split_once('=').ok_or(KeyFileError::Syntax { line })?;
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .ok_or(KeyFileError::Syntax { line })?;
            let (name, slot): (&'static str, &mut Option<Zeroizing<[u8; 32]>>) = match name.trim() {
                "ed25519" => ("ed25519", &mut identity),
                "secp256k1" => ("secp256k1", &mut anchor),
                other => return Err(KeyFileError::UnknownKey { line, name: other.to_owned() }),
            };
            if slot.is_some() {
                return Err(KeyFileError::Duplicate { line, name });
            }
            let mut bytes = Zeroizing::new([0u8; 32]);
            hex::decode_to_slice(value, bytes.as_mut_slice())
                .map_err(|_| KeyFileError::BadValue { line, name })?;
            *slot = Some(bytes);
        }
        let identity = identity.ok_or(KeyFileError::Missing("ed25519"))?;
        let anchor = anchor.ok_or(KeyFileError::Missing("secp256k1"))?;
        Ok(KeyFile {
            identity: Keypair::from_secret(*identity),
            anchor: AnchorKey::from_secret(*anchor).ok_or(KeyFileError::InvalidAnchorKey)?,
        })
    }

    /// The file's text, with comments naming the public ids.
    pub fn to_text(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "# meshd gateway keys. SECRET: keep this file mode 0600, readable only by meshd.\n\
             # gateway id:     {}\n\
             # anchor address: {}\n\
             ed25519 = \"{}\"\n\
             secp256k1 = \"{}\"\n",
            self.identity.gateway_id(),
            self.anchor.address(),
            hex::encode(*self.identity.secret_bytes()),
            hex::encode(*self.anchor.secret_bytes()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> KeyFile {
        KeyFile {
            identity: Keypair::from_secret([1; 32]),
            anchor: AnchorKey::from_secret([2; 32]).expect("valid scalar"),
        }
    }

    #[test]
    fn key_file_round_trips() {
        let keys = sample();
        let parsed = KeyFile::parse(&keys.to_text()).expect("parse");
        assert_eq!(parsed.identity.gateway_id(), keys.identity.gateway_id());
        assert_eq!(parsed.anchor.address(), keys.anchor.address());
    }

    #[test]
    fn key_file_errors_name_the_line() {
        let err = KeyFile::parse("ed25519 = \"00\"\n").err();
        assert_eq!(err, Some(KeyFileError::BadValue { line: 1, name: "ed25519" }));
        let err = KeyFile::parse("# c\nrsa = \"00\"").err();
        assert_eq!(err, Some(KeyFileError::UnknownKey { line: 2, name: "rsa".into() }));
        let zero = format!("ed25519 = \"{}\"\nsecp256k1 = \"{}\"", "11".repeat(32), "00".repeat(32));
        assert_eq!(KeyFile::parse(&zero).err(), Some(KeyFileError::InvalidAnchorKey));
        assert_eq!(KeyFile::parse("").err(), Some(KeyFileError::Missing("ed25519")));
    }

    #[test]
    fn anchor_address_matches_a_known_vector() {
        // The well-known first development account of anvil/hardhat.
        let secret: [u8; 32] =
            hex::decode("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
                .expect("hex")
                .try_into()
                .expect("32 bytes");
        let key = AnchorKey::from_secret(secret).expect("valid");
        assert_eq!(key.address().to_string(), "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
    }

    #[test]
    fn anchor_signature_recovers_to_the_address() {
        let key = AnchorKey::from_secret([5; 32]).expect("valid");
        let digest = keccak256(b"anchor").0;
        let sig = key.sign_digest(&digest).expect("sign");
        let recovery = k256::ecdsa::RecoveryId::from_byte(sig[64] - 27).expect("v");
        let signature = k256::ecdsa::Signature::from_slice(&sig[..64]).expect("sig");
        let recovered =
            k256::ecdsa::VerifyingKey::recover_from_prehash(&digest, &signature, recovery).expect("recover");
        let point = recovered.to_encoded_point(false);
        assert_eq!(&keccak256(&point.as_bytes()[1..]).0[12..], &key.address().0[..]);
    }
}
