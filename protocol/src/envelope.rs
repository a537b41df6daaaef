//! The signed, versioned envelope every message travels in.
//!
//! ```text
//! Envelope { version: u8, kind: u8, body: bytes, signer: [u8; 32], signature: [u8; 64] }
//! ```
//!
//! The signature is ed25519 by `signer` over [`Domain::sign_bytes`]:
//! `"meshd.envelope.v1" ‖ len(network) ‖ network ‖ version ‖ kind ‖ u32le(len(body)) ‖ body`.
//! The domain tag keeps envelope signatures apart from every other signature a
//! key makes (commit votes, libp2p handshakes); the network name keeps a test
//! network's messages from being replayed on another network; version and kind
//! are signed so a body cannot be re-labelled as another kind.

use bincode::{Decode, Encode};

use crate::codec::{self, CodecError};
use crate::hash::Hash32;
use crate::keys::Keypair;
use crate::message::{Kind, Message};

/// The envelope format version this code writes and reads.
pub const VERSION: u8 = 1;

/// A signed message as it travels on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Envelope {
    /// Format version, [`VERSION`].
    pub version: u8,
    /// Which body follows.
    pub kind: Kind,
    /// The body, encoded by [`codec`].
    pub body: Vec<u8>,
    /// The signer's ed25519 public key (a gateway, or a meter for readings).
    pub signer: [u8; 32],
    /// ed25519 signature over [`Domain::sign_bytes`].
    pub signature: [u8; 64],
}

/// The signing domain: a fixed tag plus the network's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Domain {
    prefix: Vec<u8>,
}

impl Domain {
    /// Tag that starts every envelope's signed bytes.
    pub const TAG: &'static [u8] = b"meshd.envelope.v1";

    /// Longest network name: the name is length-prefixed with one byte.
    pub const MAX_NETWORK_LEN: usize = 255;

    /// The domain of a network, named as in the config (`network.name`). Names
    /// longer than [`Domain::MAX_NETWORK_LEN`] bytes are cut (config validation refuses them).
    pub fn new(network: &str) -> Self {
        let name = &network.as_bytes()[..network.len().min(Self::MAX_NETWORK_LEN)];
        let mut prefix = Vec::with_capacity(Self::TAG.len() + 1 + name.len());
        prefix.extend_from_slice(Self::TAG);
        prefix.push(name.len() as u8);
        prefix.extend_from_slice(name);
        Domain { prefix }
    }

    /// The exact bytes signed for an envelope with this version, kind and body.
    pub fn sign_bytes(&self, version: u8, kind: Kind, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.prefix.len() + 6 + body.len());
        out.extend_from_slice(&self.prefix);
        out.push(version);
        out.push(kind.tag());
        // Bodies are bounded by the codec's limits, far below u32::MAX.
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(body);
        out
    }
}

impl Envelope {
    /// Encodes `message` and signs it with `key` in `domain`.
    pub fn seal(domain: &Domain, key: &Keypair, message: &Message) -> Result<Envelope, CodecError> {
        let kind = message.kind();
        let body = codec::encode_body(message)?;
        let signature = key.sign(&domain.sign_bytes(VERSION, kind, &body));
        Ok(Envelope { version: VERSION, kind, body, signer: key.public_bytes(), signature })
    }

    /// The bytes this envelope's signature must cover in `domain`.
    pub fn sign_bytes(&self, domain: &Domain) -> Vec<u8> {
        domain.sign_bytes(self.version, self.kind, &self.body)
    }

    /// Decodes the body (without checking the signature; see [`crate::signature`]).
    pub fn open(&self) -> Result<Message, CodecError> {
        codec::decode_body(self.kind, &self.body)
    }

    /// The message id: keccak256 of the encoded envelope, signature included,
    /// so that a copy with a broken signature never shadows the genuine one.
    pub fn id(&self) -> Result<Hash32, CodecError> {
        Ok(crate::hash::keccak256(codec::encode_envelope(self)?))
    }
}
