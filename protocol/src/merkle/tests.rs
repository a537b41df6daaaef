//! Merkle tests, with vectors from OpenZeppelin's reference implementation.
//!
//! The vectors were produced with `@openzeppelin/merkle-tree` 1.0.8 from the npm
//! registry by `protocol/tests/vectors/merkle-vectors.js` (its README says how):
//!
//! ```text
//! npm install @openzeppelin/merkle-tree@1.0.8 ethereum-cryptography
//! node merkle-vectors.js   # StandardMerkleTree.of(values, types); root, leafHash(v), getProof(i)
//! ```
//!
//! where value `i` of each set is:
//! - report: `[keccak256("report-{i}")]` as `["bytes32"]`;
//! - reward: `[keccak256("gateway-{i}"), UNITS[i]]` as `["bytes32", "uint256"]`;
//! - energy: `[keccak256("meter-{i}"), WH[i]]` as `["bytes32", "uint256"]`;
//!
//! with the ids keccak256 of the UTF-8 string, and the amounts below.

use proptest::prelude::*;

use super::*;

/// docs/chain.md §5's summary-leaf vector (also checked by the contracts'
/// tests against OpenZeppelin's `StandardMerkleTree`).
#[test]
fn summary_leaf_matches_the_documented_vector() {
    use crate::geo::Region;
    let summary = EpochSummary {
        region: Region(0x8a2a1072b59ffff),
        epoch: 1,
        previous: Hash32::ZERO,
        reports_root: keccak256("reports"),
        rewards_root: keccak256("rewards"),
        energy_root: keccak256("energy"),
        beacon_count: 0,
        witness_count: 0,
        attestation_count: 0,
        reward_units: 0,
        energy_wh: 0,
        committee_hash: Hash32::ZERO,
    };
    let expected: Hash32 =
        "0x4909ece1013ca661a2ecb5455cea76107c62e84bcd0a5fd1335c6896f310c6af".parse().expect("valid hex");
    assert_eq!(summary_leaf(&summary, &keccak256("summary")), expected);
}

const UNITS: [u64; 8] = [1, 1_000_000, 1_099_511_627_779, u64::MAX, 0, 42, 7, 123_456_789];
const WH: [u64; 8] = [999_999, 1_000_000, 0, u64::MAX, 5, 250_000, 3_600, 86_400_000];

#[derive(Clone, Copy, Debug)]
enum Set {
    Report,
    Reward,
    Energy,
}

fn leaves(set: Set, n: usize) -> Vec<Hash32> {
    (0..n)
        .map(|i| match set {
            Set::Report => report_leaf(&keccak256(format!("report-{i}"))),
            Set::Reward => reward_leaf(&GatewayId(keccak256(format!("gateway-{i}")).0), UNITS[i]),
            Set::Energy => energy_leaf(&MeterId(keccak256(format!("meter-{i}")).0), WH[i]),
        })
        .collect()
}

fn h(hex: &str) -> Hash32 {
    hex.parse().expect("vector hash")
}

/// `(set, leaves, root)` for every set size, from the reference implementation.
const ROOTS: [(Set, usize, &str); 15] = [
    (Set::Report, 1, "0xca6aacbc3913e9092fd830334f27480022ad59f873a7610d67e34a517a60ed24"),
    (Set::Report, 2, "0x3018a5dd8cee10bcdd42f70d46b3ea0ad811c9e2af0d11ccd13434f3cb87e648"),
    (Set::Report, 3, "0x2834e4120415cc230733fe4846eeb1da6389960dfb9e54010ff422b7a90e569f"),
    (Set::Report, 5, "0xe06b937a22578cd282e386de7a6d95d9dcd04a797b95f21340aab2d5d6e8ec3e"),
    (Set::Report, 8, "0xe276eb1a5799a53dba8ccc3845b30bfeb63b74bab4869211f03d358727b797c6"),
    (Set::Reward, 1, "0x8fcbfac3906ad3f4b0335ddd59ff390e2ab6a39d34fc355a4dee61b7d2b2bed6"),
    (Set::Reward, 2, "0xe43b6ec5aa3e6567361787546eb9d7194f27cb96b64b937a2d11708c321bb720"),
    (Set::Reward, 3, "0xa26376704bca715dc1e030a20a22edc9c564865ed7aaa4dbab92700fa528468d"),
    (Set::Reward, 5, "0x68de3b71d795b1a2b937435fdb9cbc75ed79bdaaa058858c33063559774e25de"),
    (Set::Reward, 8, "0x7fbec24009c2f76ea71cda7bc11d247a2ad4c242326542ab245e9062382faef1"),
    (Set::Energy, 1, "0xd3573edf63cc93ff7408b6570fb18e5666dc7b0f84890ebda48f212bcc42d8e5"),
    (Set::Energy, 2, "0x4fce2f4176c4d5c6f641b70cd89a76f707e86ede1097d7ce236a306e42010389"),
    (Set::Energy, 3, "0xdc046f46e75378b6fe34ff923b48809fa02cf15745c2d0217d316a75e9e56523"),
    (Set::Energy, 5, "0x579df9e179529628d578948a9429c75e776afab02cde560c18372b483ffe3270"),
    (Set::Energy, 8, "0xb90ff14382dd34508e8ce948b5d875c7762f33624a05f1c6e6668d18386f7cc0"),
];

/// `(set, leaves, index, proof)` for every leaf of the 3- and 5-leaf sets.
const PROOFS: [(Set, usize, usize, &[&str]); 24] = [
    (Set::Report, 3, 0, &["0x25e38ff099da0900670935a3e610170d984422cde42adba13bde1a1609f99c89"]),
    (
        Set::Report,
        3,
        1,
        &[
            "0xc0f10b3742f31e9f119b1aa3786e5d8e8f321bedb3515e10b61611264553edf5",
            "0xca6aacbc3913e9092fd830334f27480022ad59f873a7610d67e34a517a60ed24",
        ],
    ),
    (
        Set::Report,
        3,
        2,
        &[
            "0xae90e7f1d8912aa34fb7b03e276e37c15576a879cc5bfb759b504aba809d341d",
            "0xca6aacbc3913e9092fd830334f27480022ad59f873a7610d67e34a517a60ed24",
        ],
    ),
    (
        Set::Report,
        5,
        0,
        &[
            "0xc0f10b3742f31e9f119b1aa3786e5d8e8f321bedb3515e10b61611264553edf5",
            "0x28f023e51ff7a0baa70ac811ae475d33f31ea3a08ba48af8867f1b78101992fa",
        ],
    ),
    (
        Set::Report,
        5,
        1,
        &[
            "0x6bedce27d29f84e0673f5430946427b642354c160da3cacbaa6c16908563cc6c",
            "0xef1cce8485ad81ed7bf1bd32ee629fa1a393f18190052954d60bf468d4f2f90a",
            "0x51633ff8def9a5410b8e0752c0b9160f849e6588d3812193ae32b223c1a3198c",
        ],
    ),
    (
        Set::Report,
        5,
        2,
        &[
            "0xca6aacbc3913e9092fd830334f27480022ad59f873a7610d67e34a517a60ed24",
            "0x28f023e51ff7a0baa70ac811ae475d33f31ea3a08ba48af8867f1b78101992fa",
        ],
    ),
    (
        Set::Report,
        5,
        3,
        &[
            "0xae90e7f1d8912aa34fb7b03e276e37c15576a879cc5bfb759b504aba809d341d",
            "0xef1cce8485ad81ed7bf1bd32ee629fa1a393f18190052954d60bf468d4f2f90a",
            "0x51633ff8def9a5410b8e0752c0b9160f849e6588d3812193ae32b223c1a3198c",
        ],
    ),
    (
        Set::Report,
        5,
        4,
        &[
            "0xb54126a85d11498420ec6fb605a567f16f1e28c9d24b9b15d1615ebf8ebfcc87",
            "0x51633ff8def9a5410b8e0752c0b9160f849e6588d3812193ae32b223c1a3198c",
        ],
    ),
    (
        Set::Reward,
        3,
        0,
        &[
            "0x7fc0a46b69d0e59f2ef50562f12d70897d579317de8d13fda7f240ad71d94c78",
            "0x967a954e230e943f965dff6d8fc7dfa7144d5419ca4fcbd301e3b17d661436ea",
        ],
    ),
    (Set::Reward, 3, 1, &["0xc76b08e02a7cf0e70683b3e5ccc468d227095fc713d7f4b44c82f4e3e900e751"]),
    (
        Set::Reward,
        3,
        2,
        &[
            "0x8fcbfac3906ad3f4b0335ddd59ff390e2ab6a39d34fc355a4dee61b7d2b2bed6",
            "0x967a954e230e943f965dff6d8fc7dfa7144d5419ca4fcbd301e3b17d661436ea",
        ],
    ),
    (
        Set::Reward,
        5,
        0,
        &[
            "0x967a954e230e943f965dff6d8fc7dfa7144d5419ca4fcbd301e3b17d661436ea",
            "0x5befcfdf1a49af98f643009c56ce7e6e3fe166330bc23816c6a6e34106e640f5",
        ],
    ),
    (
        Set::Reward,
        5,
        1,
        &[
            "0x8fcbfac3906ad3f4b0335ddd59ff390e2ab6a39d34fc355a4dee61b7d2b2bed6",
            "0x5befcfdf1a49af98f643009c56ce7e6e3fe166330bc23816c6a6e34106e640f5",
        ],
    ),
    (
        Set::Reward,
        5,
        2,
        &[
            "0x59fc8f103639e521f4f1c04e915acea96f0d422215d44439097ce7c685128842",
            "0x9bb1701c9899c942dd1f4f2ab86ddd1325d75bde88c21a53659a6240b48ef95e",
            "0xe43b6ec5aa3e6567361787546eb9d7194f27cb96b64b937a2d11708c321bb720",
        ],
    ),
    (
        Set::Reward,
        5,
        3,
        &[
            "0x1087e19f65a83ff5b1106c5b8d1303ea3f4f06d66c32b0f4b012f2b5a3ed9f04",
            "0xe43b6ec5aa3e6567361787546eb9d7194f27cb96b64b937a2d11708c321bb720",
        ],
    ),
    (
        Set::Reward,
        5,
        4,
        &[
            "0x7fc0a46b69d0e59f2ef50562f12d70897d579317de8d13fda7f240ad71d94c78",
            "0x9bb1701c9899c942dd1f4f2ab86ddd1325d75bde88c21a53659a6240b48ef95e",
            "0xe43b6ec5aa3e6567361787546eb9d7194f27cb96b64b937a2d11708c321bb720",
        ],
    ),
    (
        Set::Energy,
        3,
        0,
        &[
            "0x9ba78693ae5d33bb193825a08eecfbfe96e27a0c314098bafc6ef0b9f1a2986e",
            "0xf374129488d514d78dab9d89b2b3a0d6c5cbfe2e5322798e53aaf50c617d302c",
        ],
    ),
    (
        Set::Energy,
        3,
        1,
        &[
            "0xd3573edf63cc93ff7408b6570fb18e5666dc7b0f84890ebda48f212bcc42d8e5",
            "0xf374129488d514d78dab9d89b2b3a0d6c5cbfe2e5322798e53aaf50c617d302c",
        ],
    ),
    (Set::Energy, 3, 2, &["0x4fce2f4176c4d5c6f641b70cd89a76f707e86ede1097d7ce236a306e42010389"]),
    (
        Set::Energy,
        5,
        0,
        &[
            "0x9ba78693ae5d33bb193825a08eecfbfe96e27a0c314098bafc6ef0b9f1a2986e",
            "0x69f362a90a9818bedadbde8d6ec7dbb1f467b2e9dbe789b890d232a4ba5c699c",
        ],
    ),
    (
        Set::Energy,
        5,
        1,
        &[
            "0xd3573edf63cc93ff7408b6570fb18e5666dc7b0f84890ebda48f212bcc42d8e5",
            "0x69f362a90a9818bedadbde8d6ec7dbb1f467b2e9dbe789b890d232a4ba5c699c",
        ],
    ),
    (
        Set::Energy,
        5,
        2,
        &[
            "0x40b053ab09bc8ee969f721a7c0008388027cdacd1066c679b221ec0dbafcc3a1",
            "0x4fce2f4176c4d5c6f641b70cd89a76f707e86ede1097d7ce236a306e42010389",
        ],
    ),
    (
        Set::Energy,
        5,
        3,
        &[
            "0x1a3caeefb5821db4d8f88f326860b5e6f5da9e1a7ab63413ed6db1e31c2ba287",
            "0xf374129488d514d78dab9d89b2b3a0d6c5cbfe2e5322798e53aaf50c617d302c",
            "0x4fce2f4176c4d5c6f641b70cd89a76f707e86ede1097d7ce236a306e42010389",
        ],
    ),
    (
        Set::Energy,
        5,
        4,
        &[
            "0x6f4e3655371387f3ae105c66f5052b95f1a981c11aade973fedca91565350189",
            "0xf374129488d514d78dab9d89b2b3a0d6c5cbfe2e5322798e53aaf50c617d302c",
            "0x4fce2f4176c4d5c6f641b70cd89a76f707e86ede1097d7ce236a306e42010389",
        ],
    ),
];

/// The leaf hash of value 1 of each set (`tree.leafHash(value)`).
const LEAVES: [(Set, &str); 3] = [
    (Set::Report, "0xae90e7f1d8912aa34fb7b03e276e37c15576a879cc5bfb759b504aba809d341d"),
    (Set::Reward, "0x967a954e230e943f965dff6d8fc7dfa7144d5419ca4fcbd301e3b17d661436ea"),
    (Set::Energy, "0x9ba78693ae5d33bb193825a08eecfbfe96e27a0c314098bafc6ef0b9f1a2986e"),
];

#[test]
fn leaf_hashes_match_the_reference() {
    for (set, expected) in LEAVES {
        assert_eq!(leaves(set, 2)[1], h(expected), "{set:?}");
    }
}

#[test]
fn roots_match_the_reference_for_every_set() {
    for (set, n, root) in ROOTS {
        assert_eq!(MerkleTree::new(leaves(set, n)).root(), h(root), "{set:?} with {n} leaves");
    }
}

#[test]
fn proofs_match_the_reference_and_verify() {
    for (set, n, index, expected) in PROOFS {
        let leaves = leaves(set, n);
        let tree = MerkleTree::new(leaves.clone());
        let proof = tree.proof(index).expect("in range");
        let expected: Vec<Hash32> = expected.iter().map(|x| h(x)).collect();
        assert_eq!(proof, expected, "{set:?} {n} #{index}");
        assert!(verify(&proof, &tree.root(), &leaves[index]));
        assert_eq!(tree.proof_of(&leaves[index]), Ok(proof));
    }
}

#[test]
fn single_leaf_tree_has_the_leaf_as_root_and_an_empty_proof() {
    let leaf = report_leaf(&keccak256(b"only"));
    let tree = MerkleTree::new([leaf]);
    assert_eq!(tree.root(), leaf);
    assert_eq!(tree.proof(0), Ok(Vec::new()));
    assert!(verify(&[], &tree.root(), &leaf));
}

#[test]
fn empty_tree_has_the_zero_root_and_proves_nothing() {
    let tree = MerkleTree::new([]);
    assert!(tree.is_empty());
    assert_eq!(tree.root(), Hash32::ZERO);
    assert_eq!(tree.proof(0), Err(ProofError::IndexOutOfRange { index: 0, len: 0 }));
    assert!(!verify(&[], &Hash32::ZERO, &Hash32::ZERO));
}

#[test]
fn root_does_not_depend_on_the_order_leaves_are_given_in() {
    let mut given = leaves(Set::Reward, 8);
    let root = MerkleTree::new(given.clone()).root();
    given.reverse();
    given.swap(1, 5);
    assert_eq!(MerkleTree::new(given).root(), root);
}

#[test]
fn unknown_leaves_and_indexes_have_no_proof() {
    let tree = MerkleTree::new(leaves(Set::Energy, 3));
    assert_eq!(tree.proof(3), Err(ProofError::IndexOutOfRange { index: 3, len: 3 }));
    let stranger = energy_leaf(&MeterId([9; 32]), 1);
    assert_eq!(tree.proof_of(&stranger), Err(ProofError::UnknownLeaf(stranger)));
}

#[test]
fn abi_words_are_big_endian_and_left_padded() {
    let encoded = abi_encode(&[AbiValue::Bytes32([0xab; 32]), AbiValue::Uint(0x0102)]);
    assert_eq!(encoded.len(), 64);
    assert_eq!(&encoded[..32], &[0xab; 32]);
    assert_eq!(&encoded[32..62], &[0; 30]);
    assert_eq!(&encoded[62..], &[0x01, 0x02]);
}

fn arb_leaves() -> impl Strategy<Value = Vec<Hash32>> {
    prop::collection::vec(any::<[u8; 32]>().prop_map(Hash32), 1..40)
}

proptest! {
    #[test]
    fn every_proof_verifies(leaves in arb_leaves()) {
        let tree = MerkleTree::new(leaves.clone());
        for (i, leaf) in leaves.iter().enumerate() {
            let proof = tree.proof(i).expect("in range");
            prop_assert!(verify(&proof, &tree.root(), leaf));
            prop_assert_eq!(tree.leaf(i), Some(*leaf));
        }
    }

    #[test]
    fn a_tampered_proof_or_leaf_does_not_verify(
        leaves in prop::collection::vec(any::<[u8; 32]>().prop_map(Hash32), 2..40),
        pick in any::<prop::sample::Index>(),
        byte in 0usize..32,
        bit in 0u8..8,
    ) {
        let tree = MerkleTree::new(leaves.clone());
        let i = pick.index(leaves.len());
        let proof = tree.proof(i).expect("in range");
        let flip = |h: &Hash32| { let mut h = *h; h.0[byte] ^= 1 << bit; h };
        prop_assert!(!verify(&proof, &tree.root(), &flip(&leaves[i])));
        for j in 0..proof.len() {
            let mut tampered = proof.clone();
            tampered[j] = flip(&tampered[j]);
            prop_assert!(!verify(&tampered, &tree.root(), &leaves[i]));
        }
        prop_assert!(!verify(&proof[..proof.len() - 1], &tree.root(), &leaves[i]));
    }
}
