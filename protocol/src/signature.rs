//! Signature verification with one verdict per message on every node.
//!
//! # The verdict
//!
//! A signature `(R, s)` by key `A` on message `M` is **valid** when
//! - `A` decodes to a curve point that is not of small order (a small-order key
//!   would accept forged signatures for any message),
//! - `R` decodes to a curve point,
//! - `s` is canonical (`s < ℓ`), and
//! - the *cofactored* equation `[8]([s]B − [k]A − R) = 0` holds, where
//!   `k = SHA-512(R ‖ A ‖ M) mod ℓ`.
//!
//! This is the verdict of [`verify`], and [`verify_batch`] returns exactly the
//! same verdict for every signature, whatever else is in the batch.
//!
//! # The weak-key caveat of batch verification, and how it is handled
//!
//! ed25519-dalek's `verify_batch` checks the *cofactorless* batch equation
//! `Σ zᵢ(Rᵢ + kᵢAᵢ − sᵢB) = 0` with 128-bit coefficients `zᵢ` derived from a
//! transcript of the whole batch. A signature whose `R` or `A` carries a
//! small-order (torsion) component `T` contributes `zᵢ·T` to that sum, which
//! vanishes exactly when `zᵢ` is a multiple of the order of `T` (probability
//! 1/2, 1/4 or 1/8). Such a signature therefore passes or fails *depending on
//! the other signatures in the batch*, while dalek's single `verify_strict`
//! always rejects it. Two nodes batching different messages would disagree on
//! the same message: a consensus split that an attacker can cause at will.
//!
//! meshd avoids this by defining validity with the cofactored equation, which
//! ignores torsion components entirely:
//! - when the batch equation holds, every signature's prime-order part is valid
//!   (except with probability about 2⁻¹²⁸), so each is cofactored-valid;
//! - when it fails (an invalid signature, or only torsion that did not cancel),
//!   every signature is checked alone with the cofactored equation.
//!
//! Either way each signature gets its cofactored verdict. Keys of small order
//! are refused before batching, and non-canonical `s` values are refused
//! without batching so they cannot make a whole batch fail. Honest signers
//! (RFC 8032) produce torsion-free `R` and `A`, which every rule accepts.

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha512};

use crate::envelope::{Domain, Envelope};
use crate::id::IdError;

/// Why a signature is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The signer's key is not a point, or is of small order.
    #[error("bad signer key: {0}")]
    BadKey(IdError),
    /// `R` is not the encoding of a curve point.
    #[error("the signature's R is not a curve point")]
    BadR,
    /// `s` is not below the group order.
    #[error("the signature's s is not canonical")]
    NonCanonicalS,
    /// The verification equation does not hold.
    #[error("the signature does not match the message and key")]
    Mismatch,
}

impl From<IdError> for SignatureError {
    fn from(e: IdError) -> Self {
        SignatureError::BadKey(e)
    }
}

/// Checks a raw signature with the cofactored equation (see the module docs).
pub fn verify_raw(signer: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> Result<(), SignatureError> {
    let key = parse_key(signer)?;
    verify_with_key(&key, message, signature)
}

/// Checks an envelope's signature in `domain`.
pub fn verify(domain: &Domain, envelope: &Envelope) -> Result<(), SignatureError> {
    verify_raw(&envelope.signer, &envelope.sign_bytes(domain), &envelope.signature)
}

fn parse_key(signer: &[u8; 32]) -> Result<VerifyingKey, SignatureError> {
    let key = VerifyingKey::from_bytes(signer).map_err(|_| IdError::InvalidKey)?;
    if key.is_weak() {
        return Err(IdError::WeakKey.into());
    }
    Ok(key)
}

fn canonical_s(signature: &[u8; 64]) -> Result<Scalar, SignatureError> {
    let mut s = [0u8; 32];
    s.copy_from_slice(&signature[32..]);
    Option::from(Scalar::from_canonical_bytes(s)).ok_or(SignatureError::NonCanonicalS)
}

fn verify_with_key(key: &VerifyingKey, message: &[u8], signature: &[u8; 64]) -> Result<(), SignatureError> {
    let s = canonical_s(signature)?;
    let mut r_bytes = [0u8; 32];
    r_bytes.copy_from_slice(&signature[..32]);
    let r = CompressedEdwardsY(r_bytes).decompress().ok_or(SignatureError::BadR)?;
    let mut hasher = Sha512::new();
    hasher.update(r_bytes);
    hasher.update(key.as_bytes());
    hasher.update(message);
    let k = Scalar::from_bytes_mod_order_wide(&hasher.finalize().into());
    // [s]B − [k]A, computed in variable time: nothing here is secret.
    let expected = EdwardsPoint::vartime_double_scalar_mul_basepoint(&(-k), &key.to_edwards(), &s);
    if (expected - r).mul_by_cofactor().is_identity() { Ok(()) } else { Err(SignatureError::Mismatch) }
}

/// One signature to check in a batch.
#[derive(Clone, Copy, Debug)]
pub struct Item<'a> {
    /// The signer's public key.
    pub signer: &'a [u8; 32],
    /// The signed bytes.
    pub message: &'a [u8],
    /// The signature.
    pub signature: &'a [u8; 64],
}

/// Checks many signatures at once; element `i` of the result is the verdict of
/// `items[i]`, identical to [`verify_raw`] on it alone.
///
/// A batch of 64 costs roughly half of 64 single checks when all are valid (see
/// `benches/verify.rs`). When any is invalid the batch falls back to checking
/// each alone, so a flood of bad signatures costs the single-check price plus
/// one batch attempt; callers that expect hostile input should keep batches
/// small or per-peer.
pub fn verify_batch(items: &[Item<'_>]) -> Vec<Result<(), SignatureError>> {
    let mut verdicts: Vec<Result<(), SignatureError>> = vec![Ok(()); items.len()];
    let mut keys = Vec::with_capacity(items.len());
    let mut signatures = Vec::with_capacity(items.len());
    let mut messages = Vec::with_capacity(items.len());
    let mut batched = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let prepared = parse_key(item.signer).and_then(|key| canonical_s(item.signature).map(|_| key));
        match prepared {
            Ok(key) => {
                keys.push(key);
                signatures.push(ed25519_dalek::Signature::from_bytes(item.signature));
                messages.push(item.message);
                batched.push(i);
            }
            Err(e) => verdicts[i] = Err(e),
        }
    }
    if batched.is_empty() || ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok() {
        return verdicts;
    }
    for (slot, &i) in batched.iter().enumerate() {
        verdicts[i] = verify_with_key(&keys[slot], messages[slot], items[i].signature);
    }
    verdicts
}

/// Checks the signatures of many envelopes in `domain` (see [`verify_batch`]).
pub fn verify_envelopes(domain: &Domain, envelopes: &[&Envelope]) -> Vec<Result<(), SignatureError>> {
    let messages: Vec<Vec<u8>> = envelopes.iter().map(|e| e.sign_bytes(domain)).collect();
    let items: Vec<Item<'_>> = envelopes
        .iter()
        .zip(&messages)
        .map(|(e, m)| Item { signer: &e.signer, message: m, signature: &e.signature })
        .collect();
    verify_batch(&items)
}
