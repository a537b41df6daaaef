use super::*;

const DELAY: u64 = 1_000;

fn keys(n: u64) -> Vec<AnchorKey> {
    let mut keys: Vec<AnchorKey> = (1..=n)
        .map(|i| {
            let mut secret = [0u8; 32];
            secret[24..].copy_from_slice(&(i + 77).to_be_bytes());
            AnchorKey::from_secret(secret).expect("small scalars are valid")
        })
        .collect();
    keys.sort_by_key(AnchorKey::address);
    keys
}

fn domain() -> AnchorDomain {
    AnchorDomain { chain_id: 31337, verifying_contract: EvmAddress([0x5f; 20]) }
}

fn collector(keys: &[AnchorKey], own: usize) -> Collector {
    Collector::new(
        CollectorConfig { max_ranges: 2, fallback_delay_ms: DELAY },
        domain(),
        keys.iter().map(AnchorKey::address),
        Some(keys[own].address()),
    )
}

fn signed(key: &AnchorKey, range: EpochRange, root: Hash32) -> message::AnchorSignature {
    sign_anchor(key, &domain(), range, root).expect("sign")
}

const R0: EpochRange = EpochRange { from: 0, to: 3 };

#[test]
fn a_quorum_of_valid_signatures_completes_and_is_submitted_by_the_designated_member() {
    let keys = keys(4);
    let root = keccak256("root");
    // Range 0..=3 is anchor 0: member 0 is designated.
    let mut c = collector(&keys, 0);
    assert_eq!(c.designated(R0), Some(keys[0].address()));
    assert_eq!(c.offer(5, &signed(&keys[3], R0, root)), Ok(Offered::Added { count: 1, quorum: 3 }));
    assert_eq!(c.offer(6, &signed(&keys[1], R0, root)), Ok(Offered::Added { count: 2, quorum: 3 }));
    assert_eq!(c.poll_submission(100), None);
    assert_eq!(c.offer(7, &signed(&keys[2], R0, root)), Ok(Offered::QuorumReached { range: R0, root }));
    // A fourth signature is kept but does not complete anything again.
    assert_eq!(c.offer(8, &signed(&keys[0], R0, root)), Ok(Offered::Added { count: 4, quorum: 3 }));
    assert_eq!(c.next_due_ms(), Some(7));
    let submission = c.poll_submission(7).expect("the designated member submits at once");
    assert_eq!(submission.range, R0);
    assert_eq!(submission.root, root);
    let signers: Vec<EvmAddress> = submission.signatures.iter().map(|s| s.signer).collect();
    assert_eq!(signers, keys[..3].iter().map(AnchorKey::address).collect::<Vec<_>>(), "a quorum, sorted");
    let digest = domain().anchor_digest(R0, &root);
    for s in &submission.signatures {
        assert_eq!(recover_signer(&digest, &s.signature), Ok(s.signer));
    }
    assert_eq!(c.poll_submission(10_000), None, "handed out once");
    c.settled(R0);
    assert_eq!(c.offer(9, &signed(&keys[3], R0, root)), Err(Refused::Settled { range: R0 }));
    assert_eq!(c.pending_ranges(), 0);
    let m = c.metrics();
    assert_eq!((m.accepted, m.quorums, m.submissions, m.refused), (4, 1, 1, 1));
}

#[test]
fn other_members_submit_in_rotation_after_the_fallback_delay() {
    let keys = keys(4);
    let root = keccak256("root");
    let range = EpochRange { from: 8, to: 11 }; // anchor 2: member 2 designated
    for own in 0..4 {
        let mut c = collector(&keys, own);
        assert_eq!(c.designated(range), Some(keys[2].address()));
        for key in &keys[..3] {
            c.offer(1_000, &signed(key, range, root)).expect("valid");
        }
        let rank = (own + 4 - 2) % 4;
        let due = 1_000 + rank as u64 * DELAY;
        assert_eq!(c.submit_delay_ms(range), Some(rank as u64 * DELAY));
        if rank > 0 {
            assert_eq!(c.poll_submission(due - 1), None, "member {own} waits for its turn");
        }
        assert!(c.poll_submission(due).is_some(), "member {own} submits at {due}");
        // A failure re-arms a fallback delay later.
        c.submit_failed(range, due);
        assert_eq!(c.poll_submission(due + DELAY - 1), None);
        assert!(c.poll_submission(due + DELAY).is_some());
    }
    let designated: Vec<EvmAddress> = (0..5u64)
        .filter_map(|i| collector(&keys, 0).designated(EpochRange { from: 4 * i, to: 4 * i + 3 }))
        .collect();
    let expected: Vec<EvmAddress> = [0, 1, 2, 3, 0].iter().map(|&i| keys[i].address()).collect();
    assert_eq!(designated, expected, "the duty rotates round-robin");
}

#[test]
fn a_watcher_outside_the_committee_never_submits() {
    let keys = keys(4);
    let root = keccak256("root");
    let mut c =
        Collector::new(CollectorConfig::default(), domain(), keys.iter().map(AnchorKey::address), None);
    for key in &keys[..3] {
        c.offer(0, &signed(key, R0, root)).expect("valid");
    }
    assert_eq!(c.next_due_ms(), None);
    assert_eq!(c.poll_submission(u64::MAX), None);
}

#[test]
fn invalid_signatures_are_refused_with_their_reason() {
    let keys = keys(4);
    let outsider = AnchorKey::from_secret([9; 32]).expect("valid scalar");
    let root = keccak256("root");
    let mut c = collector(&keys, 0);

    assert_eq!(
        c.offer(0, &signed(&outsider, R0, root)),
        Err(Refused::NotMember { signer: outsider.address() })
    );

    // Signed for another root, claimed for this one.
    let mut forged = signed(&keys[1], R0, keccak256("other"));
    forged.root = root;
    assert!(matches!(
        c.offer(0, &forged),
        Err(Refused::BadSignature { reason: "it recovers to another address", .. })
    ));

    // Another member's signature under a member's name.
    let mut stolen = signed(&keys[1], R0, root);
    stolen.signer = keys[2].address().0;
    assert!(matches!(c.offer(0, &stolen), Err(Refused::BadSignature { .. })));

    let mut bad_v = signed(&keys[1], R0, root);
    bad_v.signature[64] = 1;
    assert!(matches!(c.offer(0, &bad_v), Err(Refused::BadSignature { reason: "v is not 27 or 28", .. })));

    // The malleable twin (n − s, flipped v) recovers to the same key; the contract refuses it.
    let mut high_s = signed(&keys[1], R0, root);
    let order: [u8; 32] = hex_literal_order();
    let mut s_bytes = [0u8; 32];
    s_bytes.copy_from_slice(&high_s.signature[32..64]);
    high_s.signature[32..64].copy_from_slice(&sub(&order, &s_bytes));
    high_s.signature[64] = 55 - high_s.signature[64]; // 27 <-> 28
    assert!(matches!(
        c.offer(0, &high_s),
        Err(Refused::BadSignature { reason: "s is in the upper half of the curve order", .. })
    ));

    assert!(matches!(
        c.offer(0, &message::AnchorSignature { from_epoch: 4, to_epoch: 3, ..signed(&keys[1], R0, root) }),
        Err(Refused::InvalidRange { from: 4, to: 3 })
    ));
    assert_eq!(c.count(R0, &root), 0, "nothing invalid was kept");
}

fn hex_literal_order() -> [u8; 32] {
    let mut order = [0u8; 32];
    hex::decode_to_slice("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141", &mut order)
        .expect("valid hex");
    order
}

/// `a − b` for 256-bit big-endian numbers with `a ≥ b`.
fn sub(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = i16::from(a[i]) - i16::from(b[i]) - borrow;
        borrow = i16::from(d < 0);
        if d < 0 {
            d += 256;
        }
        out[i] = d as u8;
    }
    out
}

#[test]
fn duplicates_are_counted_once_and_a_second_root_from_a_signer_is_equivocation() {
    let keys = keys(4);
    let (a, b) = (keccak256("a"), keccak256("b"));
    let mut c = collector(&keys, 0);
    assert_eq!(c.offer(0, &signed(&keys[0], R0, a)), Ok(Offered::Added { count: 1, quorum: 3 }));
    assert_eq!(c.offer(0, &signed(&keys[0], R0, a)), Ok(Offered::Duplicate));
    assert_eq!(
        c.offer(0, &signed(&keys[0], R0, b)),
        Err(Refused::Equivocation { signer: keys[0].address(), range: R0, first: a, second: b })
    );
    // Two roots for one range are counted apart.
    assert_eq!(c.offer(0, &signed(&keys[1], R0, b)), Ok(Offered::Added { count: 1, quorum: 3 }));
    assert_eq!(c.count(R0, &a), 1);
    assert_eq!(c.count(R0, &b), 1);
}

#[test]
fn memory_is_bounded_to_the_newest_ranges() {
    let keys = keys(4);
    let root = keccak256("root");
    let mut c = collector(&keys, 0); // max_ranges = 2
    let range = |i: u64| EpochRange { from: 4 * i, to: 4 * i + 3 };
    c.offer(0, &signed(&keys[0], range(1), root)).expect("valid");
    c.offer(0, &signed(&keys[0], range(2), root)).expect("valid");
    assert_eq!(c.offer(0, &signed(&keys[0], range(0), root)), Err(Refused::TooOld { range: range(0) }));
    c.offer(0, &signed(&keys[0], range(3), root)).expect("a newer range evicts the oldest");
    assert_eq!(c.pending_ranges(), 2);
    assert_eq!(c.count(range(1), &root), 0);
    assert_eq!(c.count(range(3), &root), 1);
}

#[test]
fn a_committee_change_drops_former_members_signatures() {
    let keys = keys(5);
    let root = keccak256("root");
    let mut c = collector(&keys[..4], 0);
    for key in &keys[..3] {
        c.offer(0, &signed(key, R0, root)).expect("valid");
    }
    assert!(c.next_due_ms().is_some());
    c.set_committee([keys[0].address(), keys[1].address(), keys[3].address(), keys[4].address()]);
    assert_eq!(c.count(R0, &root), 2);
    assert_eq!(c.next_due_ms(), None, "the quorum is gone with the member");
    assert_eq!(
        c.offer(1, &signed(&keys[2], R0, root)),
        Err(Refused::NotMember { signer: keys[2].address() })
    );
    assert_eq!(c.offer(1, &signed(&keys[4], R0, root)), Ok(Offered::QuorumReached { range: R0, root }));
}
