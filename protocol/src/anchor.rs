//! The EIP-712 digests the anchor committee signs, computed exactly as
//! `docs/chain.md` §4 defines them (and as `EpochAnchor` computes them on
//! chain). Pure: no provider, no IO.

use crate::hash::{Hash32, keccak256, keccak256_concat};
use crate::keys::EvmAddress;

/// The EIP-712 domain type string; its hash is the first word of the domain separator.
pub const DOMAIN_TYPE: &str =
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)";
/// The domain `name` `EpochAnchor` passes to OpenZeppelin's `EIP712` constructor.
pub const DOMAIN_NAME: &str = "meshd EpochAnchor";
/// The domain `version`; bumping it in the contract invalidates every signature.
pub const DOMAIN_VERSION: &str = "1";
/// The `Anchor` struct type string, hashed into [`ANCHOR_TYPEHASH`].
pub const ANCHOR_TYPE: &str = "Anchor(uint64 fromEpoch,uint64 toEpoch,bytes32 root)";
/// `keccak256(ANCHOR_TYPE)`, as the contract's `ANCHOR_TYPEHASH` constant
/// (spelt out so a change of the type string fails a test, not a signature).
pub const ANCHOR_TYPEHASH: Hash32 = Hash32([
    0x11, 0x3f, 0x53, 0x8a, 0x08, 0x55, 0x40, 0xda, 0xfe, 0xeb, 0xa3, 0xfd, 0x49, 0xd2, 0xf1, 0x78, 0x00,
    0x21, 0x14, 0xa4, 0x81, 0x92, 0x44, 0x80, 0xb9, 0xdb, 0xa9, 0x0e, 0x86, 0x28, 0x31, 0x43,
]);
/// The `Committee` struct type string of a signed committee handover.
pub const COMMITTEE_TYPE: &str = "Committee(uint32 version,uint64 startEpoch,address[] members)";

/// An inclusive range of epochs anchored under one root.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EpochRange {
    /// The first epoch of the range.
    pub from: u64,
    /// The last epoch of the range (inclusive).
    pub to: u64,
}

impl std::fmt::Display for EpochRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "epochs {}..={}", self.from, self.to)
    }
}

/// The EIP-712 domain of one `EpochAnchor` deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnchorDomain {
    /// The chain's id (`block.chainid`).
    pub chain_id: u64,
    /// The `EpochAnchor` contract's address.
    pub verifying_contract: EvmAddress,
}

fn uint_word(value: u64) -> [u8; 32] {
    let mut word = [0u8; 32];
    word[24..].copy_from_slice(&value.to_be_bytes());
    word
}

fn address_word(address: &EvmAddress) -> [u8; 32] {
    let mut word = [0u8; 32];
    word[12..].copy_from_slice(&address.0);
    word
}

impl AnchorDomain {
    /// `keccak256(abi.encode(typehash, keccak256(name), keccak256(version), chainId, verifyingContract))`.
    pub fn separator(&self) -> Hash32 {
        keccak256_concat(&[
            &keccak256(DOMAIN_TYPE).0,
            &keccak256(DOMAIN_NAME).0,
            &keccak256(DOMAIN_VERSION).0,
            &uint_word(self.chain_id),
            &address_word(&self.verifying_contract),
        ])
    }

    /// The digest the committee signs for anchoring `root` over `range`:
    /// `keccak256(0x19 ‖ 0x01 ‖ separator ‖ keccak256(abi.encode(ANCHOR_TYPEHASH, from, to, root)))`.
    pub fn anchor_digest(&self, range: EpochRange, root: &Hash32) -> Hash32 {
        let struct_hash =
            keccak256_concat(&[&ANCHOR_TYPEHASH.0, &uint_word(range.from), &uint_word(range.to), &root.0]);
        keccak256_concat(&[&[0x19, 0x01], &self.separator().0, &struct_hash.0])
    }

    /// The digest the committee in force signs to hand over to `members`
    /// (strictly ascending) as committee `version` (`lastVersion() + 1`) from `start_epoch`.
    pub fn committee_digest(&self, version: u32, start_epoch: u64, members: &[EvmAddress]) -> Hash32 {
        let words: Vec<u8> = members.iter().flat_map(address_word).collect();
        let struct_hash = keccak256_concat(&[
            &keccak256(COMMITTEE_TYPE).0,
            &uint_word(u64::from(version)),
            &uint_word(start_epoch),
            &keccak256(&words).0,
        ]);
        keccak256_concat(&[&[0x19, 0x01], &self.separator().0, &struct_hash.0])
    }
}

/// The BFT quorum of a committee of `n`: `⌊(n + f) / 2⌋ + 1` with
/// `f = ⌊(n − 1) / 3⌋`, as the contract's `quorum(n)` (0 for an empty committee).
pub fn quorum(n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    let f = (n - 1) / 3;
    (n + f) / 2 + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::AnchorKey;

    fn hash(hex_str: &str) -> Hash32 {
        hex_str.parse().expect("test vector is valid hex")
    }

    fn vector_domain() -> AnchorDomain {
        let mut contract = [0u8; 20];
        hex::decode_to_slice("5FbDB2315678afecb367f032d93F642f64180aa3", &mut contract)
            .expect("test vector is valid hex");
        AnchorDomain { chain_id: 31337, verifying_contract: EvmAddress(contract) }
    }

    #[test]
    fn anchor_typehash_is_the_hash_of_the_type_string() {
        assert_eq!(keccak256(ANCHOR_TYPE), ANCHOR_TYPEHASH);
        assert_eq!(
            keccak256(COMMITTEE_TYPE),
            hash("0xd93bfc979f8e76f7e4c515c3a5e72a0a714c6fcc1fd2b77366c963470c4e4ddf")
        );
    }

    #[test]
    fn domain_separator_matches_the_documented_vector() {
        assert_eq!(
            vector_domain().separator(),
            hash("0x7174e7a6f58379ad634c6d0e6bcd67b6baa8a25bc35288148f68c9819b526ef8")
        );
    }

    #[test]
    fn anchor_digest_and_signature_match_the_documented_vector() {
        let root = keccak256("meshd test root");
        assert_eq!(root, hash("0x4059c877c41fb913cc92ce74358eb80ce8000672b35e5980c89e91597a7dec3c"));
        let digest = vector_domain().anchor_digest(EpochRange { from: 0, to: 3 }, &root);
        assert_eq!(digest, hash("0x896f3f3eac82203e4cee025b2066ac792a0f8ef92c00f2c612ca17c4628ee0ed"));

        let mut secret = [0u8; 32];
        secret[31] = 1;
        let key = AnchorKey::from_secret(secret).expect("1 is a valid scalar");
        assert_eq!(key.address().to_string().to_lowercase(), "0x7e5f4552091a69125d5dfcb7b8c2659029395bdf");
        let signature = key.sign_digest(&digest.0).expect("signing succeeds");
        assert_eq!(
            hex::encode(signature),
            "42ef7e44d0583a3a204523cf906199d950a0a9ff105db4596bf826e7b216554d\
             2db9e3e06501323774c6f27d738dee74d9c31745aeebd94081059f7a978e88f1\
             1b"
        );
    }

    #[test]
    fn quorum_matches_the_documented_table() {
        let table = [(1, 1), (3, 2), (4, 3), (7, 5), (10, 7), (31, 21), (64, 43), (128, 86)];
        for (n, q) in table {
            assert_eq!(quorum(n), q, "quorum({n})");
        }
        assert_eq!(quorum(0), 0);
    }
}
