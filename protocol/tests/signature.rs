//! Signature verdicts: single and batch verification agree on every
//! signature, whatever else shares its batch — including crafted signatures
//! that carry a small-order component, on which plain batch verification
//! would disagree with itself between nodes.

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::{Signer, SigningKey};
use meshd_protocol::signature::{self, Item, SignatureError};
use sha2::{Digest, Sha512};

/// A point of order 4: the encoding of y = 0.
fn order_four_point() -> EdwardsPoint {
    let point = CompressedEdwardsY([0; 32]).decompress().expect("y = 0 is on the curve");
    assert!(point.is_small_order() && point != EdwardsPoint::default());
    point
}

/// A signature whose R carries a torsion component: valid under the
/// cofactored equation, rejected by `verify_strict`.
fn torsioned_signature(key: &SigningKey, message: &[u8], nonce: u8) -> [u8; 64] {
    let a = key.to_scalar();
    let r = Scalar::from_bytes_mod_order([nonce.max(1); 32]);
    let big_r = (ED25519_BASEPOINT_POINT * r + order_four_point()).compress();
    let mut hasher = Sha512::new();
    hasher.update(big_r.as_bytes());
    hasher.update(key.verifying_key().as_bytes());
    hasher.update(message);
    let k = Scalar::from_bytes_mod_order_wide(&hasher.finalize().into());
    let s = r + k * a;
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(big_r.as_bytes());
    out[32..].copy_from_slice(s.as_bytes());
    out
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

#[test]
fn honest_signatures_verify_singly_and_in_batches() {
    let keys: Vec<SigningKey> = (1..=20).map(key).collect();
    let messages: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; usize::from(i) * 7]).collect();
    let signatures: Vec<[u8; 64]> = keys.iter().zip(&messages).map(|(k, m)| k.sign(m).to_bytes()).collect();
    let publics: Vec<[u8; 32]> = keys.iter().map(|k| k.verifying_key().to_bytes()).collect();
    let items: Vec<Item<'_>> = (0..20)
        .map(|i| Item { signer: &publics[i], message: &messages[i], signature: &signatures[i] })
        .collect();
    assert!(signature::verify_batch(&items).iter().all(Result::is_ok));
    for item in &items {
        assert_eq!(signature::verify_raw(item.signer, item.message, item.signature), Ok(()));
    }
}

#[test]
fn a_batch_pinpoints_exactly_the_bad_signatures() {
    let keys: Vec<SigningKey> = (1..=16).map(key).collect();
    let messages: Vec<Vec<u8>> = (0..16u8).map(|i| vec![i; 40]).collect();
    let mut signatures: Vec<[u8; 64]> =
        keys.iter().zip(&messages).map(|(k, m)| k.sign(m).to_bytes()).collect();
    signatures[3][5] ^= 1; // R changed
    signatures[9] = keys[9].sign(b"another message").to_bytes();
    let publics: Vec<[u8; 32]> = keys.iter().map(|k| k.verifying_key().to_bytes()).collect();
    let items: Vec<Item<'_>> = (0..16)
        .map(|i| Item { signer: &publics[i], message: &messages[i], signature: &signatures[i] })
        .collect();
    let verdicts = signature::verify_batch(&items);
    for (i, verdict) in verdicts.iter().enumerate() {
        assert_eq!(verdict.is_ok(), i != 3 && i != 9, "signature {i}: {verdict:?}");
        assert_eq!(*verdict, signature::verify_raw(items[i].signer, items[i].message, items[i].signature));
    }
}

#[test]
fn weak_keys_and_non_canonical_scalars_are_refused_singly_and_in_batches() {
    let mut identity = [0u8; 32];
    identity[0] = 1; // the identity point: small order
    let message = b"anything";
    let forged = {
        let mut s = [0u8; 64];
        s[..32].copy_from_slice(&identity);
        s
    };
    assert!(matches!(signature::verify_raw(&identity, message, &forged), Err(SignatureError::BadKey(_))));

    let honest = key(7);
    let public = honest.verifying_key().to_bytes();
    let mut sig = honest.sign(message).to_bytes();
    // s + ℓ: the same scalar, not canonically encoded (a malleated signature).
    let s = Scalar::from_canonical_bytes(sig[32..].try_into().expect("32")).expect("canonical");
    let ell_bytes: [u8; 32] = {
        let mut b = [0u8; 32];
        b[..16].copy_from_slice(&0x14def9dea2f79cd65812631a5cf5d3edu128.to_le_bytes());
        b[31] = 0x10;
        b
    };
    let mut sum = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(s.as_bytes()[i]) + u16::from(ell_bytes[i]) + carry;
        sum[i] = v as u8;
        carry = v >> 8;
    }
    sig[32..].copy_from_slice(&sum);
    assert_eq!(signature::verify_raw(&public, message, &sig), Err(SignatureError::NonCanonicalS));

    let items = [
        Item { signer: &identity, message, signature: &forged },
        Item { signer: &public, message, signature: &sig },
    ];
    let verdicts = signature::verify_batch(&items);
    assert!(matches!(verdicts[0], Err(SignatureError::BadKey(_))));
    assert_eq!(verdicts[1], Err(SignatureError::NonCanonicalS));
}

#[test]
fn a_torsioned_signature_gets_the_same_verdict_in_every_batch() {
    let signer = key(42);
    let public = signer.verifying_key().to_bytes();
    let message = b"witness report".to_vec();
    let crafted = torsioned_signature(&signer, &message, 9);

    // The caveat is real: dalek's strict single check rejects it...
    let dalek_key = ed25519_dalek::VerifyingKey::from_bytes(&public).expect("key");
    assert!(dalek_key.verify_strict(&message, &ed25519_dalek::Signature::from_bytes(&crafted)).is_err());
    // ...while our verdict (cofactored) accepts it.
    assert_eq!(signature::verify_raw(&public, &message, &crafted), Ok(()));

    let mut plain_batch_outcomes = std::collections::BTreeSet::new();
    for companions in 0..40u8 {
        let keys: Vec<SigningKey> = (0..=companions % 5).map(|i| key(100 + i)).collect();
        let messages: Vec<Vec<u8>> =
            keys.iter().enumerate().map(|(i, _)| vec![companions, i as u8]).collect();
        let sigs: Vec<[u8; 64]> = keys.iter().zip(&messages).map(|(k, m)| k.sign(m).to_bytes()).collect();
        let publics: Vec<[u8; 32]> = keys.iter().map(|k| k.verifying_key().to_bytes()).collect();
        let mut items = vec![Item { signer: &public, message: &message, signature: &crafted }];
        items.extend((0..keys.len()).map(|i| Item {
            signer: &publics[i],
            message: &messages[i],
            signature: &sigs[i],
        }));

        let verdicts = signature::verify_batch(&items);
        assert!(verdicts.iter().all(Result::is_ok), "batch {companions}: {verdicts:?}");

        // Plain cofactorless batch verification flips with the batch's content.
        let dalek_keys: Vec<_> =
            items.iter().map(|i| ed25519_dalek::VerifyingKey::from_bytes(i.signer).expect("key")).collect();
        let dalek_sigs: Vec<_> =
            items.iter().map(|i| ed25519_dalek::Signature::from_bytes(i.signature)).collect();
        let dalek_messages: Vec<&[u8]> = items.iter().map(|i| i.message).collect();
        plain_batch_outcomes
            .insert(ed25519_dalek::verify_batch(&dalek_messages, &dalek_sigs, &dalek_keys).is_ok());
    }
    assert_eq!(
        plain_batch_outcomes.len(),
        2,
        "plain batch verification was expected to disagree with itself"
    );
}

#[test]
fn a_signature_that_is_wrong_beyond_torsion_is_refused_in_every_batch() {
    let signer = key(43);
    let public = signer.verifying_key().to_bytes();
    let mut crafted = torsioned_signature(&signer, b"one message", 11);
    crafted[40] ^= 0x01; // breaks the prime-order part as well
    assert!(signature::verify_raw(&public, b"one message", &crafted).is_err());
    let honest = key(44);
    let honest_public = honest.verifying_key().to_bytes();
    let honest_sig = honest.sign(b"other").to_bytes();
    let items = [
        Item { signer: &public, message: b"one message", signature: &crafted },
        Item { signer: &honest_public, message: b"other", signature: &honest_sig },
    ];
    let verdicts = signature::verify_batch(&items);
    assert!(verdicts[0].is_err());
    assert!(verdicts[1].is_ok());
}

#[test]
fn remembered_verdicts_are_the_verdicts_computed_and_die_with_the_guard() {
    let keys: Vec<SigningKey> = (1..=6).map(key).collect();
    let publics: Vec<[u8; 32]> = keys.iter().map(|k| k.verifying_key().to_bytes()).collect();
    let messages: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 30]).collect();
    let mut signatures: Vec<[u8; 64]> =
        keys.iter().zip(&messages).map(|(k, m)| k.sign(m).to_bytes()).collect();
    signatures[2][40] ^= 1; // wrong
    signatures[4] = torsioned_signature(&keys[4], &messages[4], 5); // valid (cofactored)
    let items: Vec<Item<'_>> = (0..6)
        .map(|i| Item { signer: &publics[i], message: &messages[i], signature: &signatures[i] })
        .collect();
    let computed: Vec<_> =
        items.iter().map(|i| signature::verify_raw(i.signer, i.message, i.signature)).collect();
    {
        // A capacity of 2 turns the generations over within this test.
        let _memo = signature::remember_verdicts(2);
        for _ in 0..3 {
            for (item, verdict) in items.iter().zip(&computed) {
                assert_eq!(signature::verify_raw(item.signer, item.message, item.signature), *verdict);
            }
            assert_eq!(signature::verify_batch(&items), computed);
            assert_eq!(signature::verify_batch(&items[1..4]), computed[1..4]);
        }
        // The same signature and key on another message is not a remembered one.
        assert!(signature::verify_raw(&publics[0], b"other bytes", &signatures[0]).is_err());
        assert!(signature::verify_raw(&publics[1], &messages[0], &signatures[0]).is_err());
    }
    assert_eq!(signature::verify_batch(&items), computed);
}
