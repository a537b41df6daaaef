// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";

import {GatewayRegistry} from "./GatewayRegistry.sol";

/// @title EpochAnchor
/// @notice Holds the Merkle roots of meshd's finalized epoch summaries, one root
/// per epoch range, each accepted only with a BFT quorum of EIP-712 signatures
/// by the anchor committee. Anybody may submit: the contract checks the quorum
/// itself, so nobody has to trust the submitter.
/// @dev Committee model. Committees are numbered snapshots ("versions") of
/// anchor addresses, each with the first epoch it signs for. At most one
/// committee is pending at a time; the first `anchor` whose `fromEpoch` reaches
/// its start activates it. A range is signed by the committee in force at its
/// `fromEpoch`. The current committee's version and size live in the same
/// storage slot as the anchoring cursor, so `anchor` reads and writes one warm
/// slot besides the new root, plus one membership lookup per signer: its cost
/// depends on the number of signatures only, never on reports or regions.
/// A committee is installed either by `COMMITTEE_MANAGER_ROLE` (the first
/// committee, or a recovery after the committee lost its quorum) or, without
/// any trusted party, by `rotateCommittee` signed by a quorum of the current
/// committee. Every member must be a gateway's anchor address in the registry
/// when the committee is installed.
contract EpochAnchor is AccessControl, EIP712 {
    /// @notice The EIP-712 type of an anchor: the statement a committee member signs.
    bytes32 public constant ANCHOR_TYPEHASH = keccak256("Anchor(uint64 fromEpoch,uint64 toEpoch,bytes32 root)");

    /// @notice The EIP-712 type of a committee handover, signed by the outgoing committee.
    /// `members` is hashed as EIP-712 hashes an `address[]`: keccak256 of the 32-byte words.
    /// `version` is the version the new committee will get (`lastVersion() + 1`), so a
    /// signed handover is used once and cannot later replace a newer pending committee.
    bytes32 public constant COMMITTEE_TYPEHASH =
        keccak256("Committee(uint32 version,uint64 startEpoch,address[] members)");

    /// @notice The role that may install a committee without a handover signature.
    bytes32 public constant COMMITTEE_MANAGER_ROLE = keccak256("meshd.EpochAnchor.COMMITTEE_MANAGER");

    /// @notice The largest committee: the protocol's `MAX_COMMITTEE` (meshd-protocol
    /// `codec`), which bounds a finality certificate. Its quorum of 86 signatures
    /// costs about 0.7 M gas to anchor, a small part of a block on any EVM chain.
    uint256 public constant MAX_COMMITTEE = 128;

    /// @notice Bytes of one signature in `signatures`: r (32) ‖ s (32) ‖ v (1), v ∈ {27, 28}.
    uint256 public constant SIGNATURE_LENGTH = 65;

    /// @notice The registry whose anchor addresses committees are made of.
    GatewayRegistry public immutable registry;

    /// @dev Everything `anchor` needs besides roots and membership, in one slot (224 bits).
    struct State {
        // The first epoch not covered by an anchored range: the next range starts here or later.
        uint64 nextEpoch;
        // The committee in force (0 before the first is activated) and its size.
        uint32 version;
        uint16 size;
        // The pending committee (size 0: none) and the first epoch it signs for.
        uint32 pendingVersion;
        uint16 pendingSize;
        uint64 pendingStart;
    }

    /// @notice A committee snapshot, for readers; `anchor` uses the packed state.
    /// @param startEpoch The first epoch it signs for.
    /// @param size The number of members.
    struct Committee {
        uint64 startEpoch;
        uint16 size;
    }

    State private _state;
    /// @dev The last committee version issued.
    uint32 private _lastVersion;
    /// @dev Roots by range key `fromEpoch << 64 | toEpoch`.
    mapping(uint128 rangeKey => bytes32 root) private _roots;
    /// @dev Membership of each committee version.
    mapping(uint32 version => mapping(address member => bool)) private _members;
    /// @dev Start and size of each committee version.
    mapping(uint32 version => Committee) private _committees;

    /// @notice A root was anchored for epochs `fromEpoch..=toEpoch`, signed by committee `version`.
    event Anchored(uint64 indexed fromEpoch, uint64 toEpoch, bytes32 root, uint32 version);
    /// @notice Committee `version` was installed; it signs from `startEpoch` on, once activated.
    event CommitteeScheduled(uint32 indexed version, uint64 startEpoch, address[] members);
    /// @notice Committee `version` came into force with the anchor of a range starting at `fromEpoch`.
    event CommitteeActivated(uint32 indexed version, uint64 fromEpoch);

    /// @notice The root is zero, the root of the empty tree: there is nothing to anchor.
    error EmptyRoot();
    /// @notice `fromEpoch` is after `toEpoch`, or `toEpoch` is the last representable epoch.
    error InvalidRange(uint64 fromEpoch, uint64 toEpoch);
    /// @notice This exact range is already anchored (a replay).
    error AlreadyAnchored(uint64 fromEpoch, uint64 toEpoch);
    /// @notice The range starts before `nextEpoch`: it overlaps an anchored range.
    error RangeOverlaps(uint64 fromEpoch, uint64 nextEpoch);
    /// @notice No committee is in force for `fromEpoch`.
    error NoCommittee(uint64 fromEpoch);
    /// @notice Fewer signatures than the quorum of the committee.
    error QuorumNotReached(uint256 signatures, uint256 quorum);
    /// @notice `signatures` is not 65 bytes per signer.
    error SignaturesLengthMismatch(uint256 signers, uint256 signatureBytes);
    /// @notice Signers must be strictly increasing (which also rules out duplicates); `index` breaks the order.
    error SignersNotAscending(uint256 index, address signer);
    /// @notice `signer` is not a member of committee `version`.
    error NotCommitteeMember(address signer, uint32 version);
    /// @notice Signature `index` does not recover to `signer` (or is malleable or malformed).
    error InvalidSignature(uint256 index, address signer);
    /// @notice A committee must have 1 to `MAX_COMMITTEE` members.
    error InvalidCommitteeSize(uint256 size);
    /// @notice Committee members must be strictly increasing addresses; `index` breaks the order.
    error MembersNotAscending(uint256 index, address member);
    /// @notice `member` is not the anchor address of a registered gateway.
    error NotRegisteredAnchor(address member);
    /// @notice A committee cannot start before `nextEpoch`: those epochs may already be anchored.
    error CommitteeStartsInPast(uint64 startEpoch, uint64 nextEpoch);
    /// @notice The zero address was given where an account is needed.
    error ZeroAddress();

    /// @notice Deploys the anchor with EIP-712 domain `("meshd EpochAnchor", "1", chainid, this)`.
    /// @param admin The account (a multisig in production) holding the admin and committee-manager roles.
    /// @param registry_ The gateway registry committees are checked against.
    constructor(address admin, GatewayRegistry registry_) EIP712("meshd EpochAnchor", "1") {
        if (admin == address(0) || address(registry_) == address(0)) revert ZeroAddress();
        registry = registry_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(COMMITTEE_MANAGER_ROLE, admin);
    }

    // ---------------------------------------------------------------- anchoring

    /// @notice Anchors `root` for epochs `fromEpoch..=toEpoch`.
    /// @dev `fromEpoch` must be at least `nextEpoch()` (no overlap, no replay;
    /// gaps are allowed). Needs `quorum(n)` or more signatures of the committee
    /// in force at `fromEpoch`, signers strictly increasing.
    /// @param fromEpoch The first epoch of the range.
    /// @param toEpoch The last epoch of the range (inclusive).
    /// @param root The Merkle root over the range's summary leaves (see docs/chain.md).
    /// @param signers The signing members' addresses, strictly increasing.
    /// @param signatures The signatures of `anchorDigest(fromEpoch, toEpoch, root)`, 65 bytes each
    /// (r ‖ s ‖ v, low s, v ∈ {27, 28}), concatenated in the order of `signers`.
    function anchor(
        uint64 fromEpoch,
        uint64 toEpoch,
        bytes32 root,
        address[] calldata signers,
        bytes calldata signatures
    ) external {
        if (root == bytes32(0)) revert EmptyRoot();
        if (fromEpoch > toEpoch || toEpoch == type(uint64).max) revert InvalidRange(fromEpoch, toEpoch);
        State memory state = _state;
        if (fromEpoch < state.nextEpoch) {
            if (_roots[_rangeKey(fromEpoch, toEpoch)] != bytes32(0)) revert AlreadyAnchored(fromEpoch, toEpoch);
            revert RangeOverlaps(fromEpoch, state.nextEpoch);
        }
        if (state.pendingSize != 0 && fromEpoch >= state.pendingStart) {
            state.version = state.pendingVersion;
            state.size = state.pendingSize;
            state.pendingVersion = 0;
            state.pendingSize = 0;
            state.pendingStart = 0;
            emit CommitteeActivated(state.version, fromEpoch);
        }
        if (state.size == 0) revert NoCommittee(fromEpoch);
        _checkQuorum(anchorDigest(fromEpoch, toEpoch, root), state.version, state.size, signers, signatures);
        state.nextEpoch = toEpoch + 1;
        _state = state;
        _roots[_rangeKey(fromEpoch, toEpoch)] = root;
        emit Anchored(fromEpoch, toEpoch, root, state.version);
    }

    /// @notice The EIP-712 digest committee members sign for an anchor:
    /// `keccak256(0x1901 ‖ domainSeparator ‖ keccak256(abi.encode(ANCHOR_TYPEHASH, fromEpoch, toEpoch, root)))`.
    /// @param fromEpoch The first epoch of the range.
    /// @param toEpoch The last epoch of the range.
    /// @param root The root.
    /// @return The digest to sign.
    function anchorDigest(uint64 fromEpoch, uint64 toEpoch, bytes32 root) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(ANCHOR_TYPEHASH, fromEpoch, toEpoch, root)));
    }

    /// @notice The root anchored for exactly `fromEpoch..=toEpoch`, zero when none.
    /// @param fromEpoch The first epoch of the range.
    /// @param toEpoch The last epoch of the range.
    /// @return The root.
    function rootOf(uint64 fromEpoch, uint64 toEpoch) external view returns (bytes32) {
        return _roots[_rangeKey(fromEpoch, toEpoch)];
    }

    /// @notice The first epoch not covered by an anchored range; the next range starts here or later.
    /// @return The epoch.
    function nextEpoch() external view returns (uint64) {
        return _state.nextEpoch;
    }

    /// @notice The BFT quorum of a committee of `n`: ⌊(n + f) / 2⌋ + 1 with f = ⌊(n − 1) / 3⌋,
    /// the smallest number of signatures two of which sets always share an honest member.
    /// @param n The committee size (positive).
    /// @return The number of signatures needed.
    function quorum(uint256 n) public pure returns (uint256) {
        return (n + (n - 1) / 3) / 2 + 1;
    }

    // --------------------------------------------------------------- committees

    /// @notice Installs a committee (committee manager only): the first one, or a replacement after a lost quorum.
    /// @param startEpoch The first epoch it signs for; at least `nextEpoch()`.
    /// @param members Anchor addresses of registered gateways, strictly increasing.
    /// @return version The new committee's version.
    function scheduleCommittee(uint64 startEpoch, address[] calldata members)
        external
        onlyRole(COMMITTEE_MANAGER_ROLE)
        returns (uint32 version)
    {
        return _schedule(startEpoch, members);
    }

    /// @notice Installs the next committee with the signatures of a quorum of the committee in force.
    /// @dev Anybody may submit. The members sign `committeeDigest(lastVersion() + 1, startEpoch, members)`.
    /// @param startEpoch The first epoch the new committee signs for; at least `nextEpoch()`.
    /// @param members Anchor addresses of registered gateways, strictly increasing.
    /// @param signers Signing members of the committee in force, strictly increasing.
    /// @param signatures Their signatures, 65 bytes each, in the order of `signers`.
    /// @return version The new committee's version.
    function rotateCommittee(
        uint64 startEpoch,
        address[] calldata members,
        address[] calldata signers,
        bytes calldata signatures
    ) external returns (uint32 version) {
        State memory state = _state;
        if (state.size == 0) revert NoCommittee(startEpoch);
        _checkQuorum(committeeDigest(_lastVersion + 1, startEpoch, members), state.version, state.size, signers, signatures);
        return _schedule(startEpoch, members);
    }

    /// @notice The EIP-712 digest of a committee handover.
    /// @param version The version the new committee will get.
    /// @param startEpoch The first epoch the new committee signs for.
    /// @param members Its members.
    /// @return The digest to sign.
    function committeeDigest(uint32 version, uint64 startEpoch, address[] calldata members)
        public
        view
        returns (bytes32)
    {
        return _hashTypedDataV4(
            keccak256(abi.encode(COMMITTEE_TYPEHASH, version, startEpoch, keccak256(abi.encodePacked(members))))
        );
    }

    /// @notice The committee in force and the pending one (version 0 / size 0: none).
    /// @return version The committee in force.
    /// @return size Its size.
    /// @return pendingVersion The pending committee.
    /// @return pendingSize Its size.
    /// @return pendingStart The first epoch it signs for.
    function committee()
        external
        view
        returns (uint32 version, uint16 size, uint32 pendingVersion, uint16 pendingSize, uint64 pendingStart)
    {
        State memory state = _state;
        return (state.version, state.size, state.pendingVersion, state.pendingSize, state.pendingStart);
    }

    /// @notice Start and size of committee `version` (zero when never installed).
    /// @param version The committee version.
    /// @return The snapshot.
    function committeeInfo(uint32 version) external view returns (Committee memory) {
        return _committees[version];
    }

    /// @notice The last committee version installed (0: none yet).
    /// @return The version.
    function lastVersion() external view returns (uint32) {
        return _lastVersion;
    }

    /// @notice Whether `account` is a member of committee `version`.
    /// @param version The committee version.
    /// @param account An anchor address.
    /// @return True when it is a member.
    function isMember(uint32 version, address account) external view returns (bool) {
        return _members[version][account];
    }

    // ---------------------------------------------------------------- internals

    function _schedule(uint64 startEpoch, address[] calldata members) private returns (uint32 version) {
        uint256 size = members.length;
        if (size == 0 || size > MAX_COMMITTEE) revert InvalidCommitteeSize(size);
        State memory state = _state;
        if (startEpoch < state.nextEpoch) revert CommitteeStartsInPast(startEpoch, state.nextEpoch);
        version = ++_lastVersion;
        mapping(address => bool) storage isMember_ = _members[version];
        address previous = address(0);
        for (uint256 i = 0; i < size; ++i) {
            address member = members[i];
            if (member <= previous) revert MembersNotAscending(i, member);
            if (registry.gatewayOfAnchor(member) == bytes32(0)) revert NotRegisteredAnchor(member);
            isMember_[member] = true;
            previous = member;
        }
        _committees[version] = Committee(startEpoch, uint16(size));
        // A pending committee that never came into force is replaced.
        state.pendingVersion = version;
        state.pendingSize = uint16(size);
        state.pendingStart = startEpoch;
        _state = state;
        emit CommitteeScheduled(version, startEpoch, members);
    }

    /// @dev Reverts unless `signers` hold a quorum of committee `version` (of `size`) and each signed `digest`.
    function _checkQuorum(
        bytes32 digest,
        uint32 version,
        uint256 size,
        address[] calldata signers,
        bytes calldata signatures
    ) private view {
        uint256 count = signers.length;
        uint256 needed = quorum(size);
        if (count < needed) revert QuorumNotReached(count, needed);
        if (signatures.length != count * SIGNATURE_LENGTH) {
            revert SignaturesLengthMismatch(count, signatures.length);
        }
        mapping(address => bool) storage isMember_ = _members[version];
        address previous = address(0);
        for (uint256 i = 0; i < count; ++i) {
            address signer = signers[i];
            if (signer <= previous) revert SignersNotAscending(i, signer);
            if (!isMember_[signer]) revert NotCommitteeMember(signer, version);
            bytes32 r;
            bytes32 s;
            uint8 v;
            // Reading r, s, v straight from calldata avoids copying the signature to memory.
            assembly ("memory-safe") {
                let at := add(signatures.offset, mul(i, 65))
                r := calldataload(at)
                s := calldataload(add(at, 32))
                v := byte(0, calldataload(add(at, 64)))
            }
            (address recovered, ECDSA.RecoverError error_,) = ECDSA.tryRecover(digest, v, r, s);
            if (error_ != ECDSA.RecoverError.NoError || recovered != signer) revert InvalidSignature(i, signer);
            previous = signer;
        }
    }

    function _rangeKey(uint64 fromEpoch, uint64 toEpoch) private pure returns (uint128) {
        return (uint128(fromEpoch) << 64) | toEpoch;
    }
}
