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
//!
//! # Remembered verdicts
//!
//! The verdict is a function of the key, the message and the signature
//! alone. A process that hosts many nodes, each verifying the same gossiped
//! message (the simulator runs a whole region on one thread), can call
//! [`remember_verdicts`]: until the returned guard is dropped, [`verify`],
//! [`verify_raw`] and [`verify_batch`] on that thread look the exact bytes
//! (key, signature and whole message) up among the verdicts already reached
//! and compute only the ones not found. Every caller gets the verdict it
//! would have computed; only the curve arithmetic is shared. Nothing is
//! remembered unless asked for, so a daemon verifies every message itself.

use std::cell::RefCell;
use std::collections::BTreeMap;

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
    if let Some(verdict) = recall(signer, message, signature) {
        return verdict;
    }
    let verdict = parse_key(signer).and_then(|key| verify_with_key(&key, message, signature));
    remember(signer, message, signature, &verdict);
    verdict
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
    let recalled: Vec<Option<Result<(), SignatureError>>> =
        items.iter().map(|item| recall(item.signer, item.message, item.signature)).collect();
    if recalled.iter().all(Option::is_some) {
        return recalled.into_iter().flatten().collect();
    }
    let unknown: Vec<Item<'_>> =
        items.iter().zip(&recalled).filter(|(_, r)| r.is_none()).map(|(item, _)| *item).collect();
    let mut computed = compute_batch(&unknown).into_iter();
    items
        .iter()
        .zip(recalled)
        .map(|(item, recalled)| match recalled {
            Some(verdict) => verdict,
            None => {
                // `computed` holds one verdict per unknown item, in order.
                let verdict = computed.next().unwrap_or(Err(SignatureError::Mismatch));
                remember(item.signer, item.message, item.signature, &verdict);
                verdict
            }
        })
        .collect()
}

fn compute_batch(items: &[Item<'_>]) -> Vec<Result<(), SignatureError>> {
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

/// Verdicts remembered on this thread, while a [`Remembering`] guard lives.
struct Memo {
    /// Verdicts reached since the last turnover.
    current: BTreeMap<Box<[u8]>, Result<(), SignatureError>>,
    /// Verdicts of the generation before; a hit is copied to `current`.
    previous: BTreeMap<Box<[u8]>, Result<(), SignatureError>>,
    /// Entries of `current` that trigger a turnover.
    capacity: usize,
    /// Scratch buffer for the lookup key, reused between lookups.
    key: Vec<u8>,
}

impl Memo {
    /// Writes the lookup key: signature first (its `R` differs between any
    /// two messages, so comparisons end within a few bytes), then key and message.
    fn fill_key(&mut self, signer: &[u8; 32], message: &[u8], signature: &[u8; 64]) {
        self.key.clear();
        self.key.extend_from_slice(signature);
        self.key.extend_from_slice(signer);
        self.key.extend_from_slice(message);
    }

    /// Stores the verdict of the key last filled, turning the generations
    /// over first when the current one is full.
    fn keep(&mut self, verdict: Result<(), SignatureError>) {
        if self.current.len() >= self.capacity {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(self.key.as_slice().into(), verdict);
    }
}

thread_local! {
    static MEMO: RefCell<Option<Memo>> = const { RefCell::new(None) };
}

/// While alive, verdicts reached on this thread are remembered (see the
/// module docs); dropping it forgets them and restores what was there before.
#[must_use = "verdicts are remembered only while the guard lives"]
pub struct Remembering {
    outer: Option<Memo>,
}

impl std::fmt::Debug for Remembering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remembering").finish_non_exhaustive()
    }
}

impl Drop for Remembering {
    fn drop(&mut self) {
        let outer = self.outer.take();
        MEMO.with(|m| *m.borrow_mut() = outer);
    }
}

/// Remembers verdicts on this thread until the guard is dropped. Memory is
/// bounded by two generations of `capacity` entries each (every entry holds
/// its key, signature and message): when one generation fills, the one
/// before it is forgotten, so a message verified again soon after (the same
/// gossip reaching every member of a region) is found.
pub fn remember_verdicts(capacity: usize) -> Remembering {
    let memo = Memo {
        current: BTreeMap::new(),
        previous: BTreeMap::new(),
        capacity: capacity.max(1),
        key: Vec::new(),
    };
    let outer = MEMO.with(|m| m.borrow_mut().replace(memo));
    Remembering { outer }
}

/// The verdict already reached on these exact bytes, if remembered.
fn recall(signer: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> Option<Result<(), SignatureError>> {
    MEMO.with(|m| {
        let mut guard = m.borrow_mut();
        let memo = guard.as_mut()?;
        memo.fill_key(signer, message, signature);
        if let Some(verdict) = memo.current.get(memo.key.as_slice()) {
            return Some(verdict.clone());
        }
        let verdict = memo.previous.get(memo.key.as_slice())?.clone();
        memo.keep(verdict.clone());
        Some(verdict)
    })
}

/// Remembers a verdict just computed, when verdicts are being remembered.
fn remember(signer: &[u8; 32], message: &[u8], signature: &[u8; 64], verdict: &Result<(), SignatureError>) {
    MEMO.with(|m| {
        let mut guard = m.borrow_mut();
        let Some(memo) = guard.as_mut() else { return };
        memo.fill_key(signer, message, signature);
        memo.keep(verdict.clone());
    })
}
