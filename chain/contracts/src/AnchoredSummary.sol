// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

import {EpochAnchor} from "./EpochAnchor.sol";

/// @title AnchoredSummary
/// @notice How a region's epoch summary sits under an anchored root, and the
/// leaves of its inner trees. Every tree is an OpenZeppelin `StandardMerkleTree`
/// (leaf `keccak256(keccak256(abi.encode(values)))`, sorted pairs), as
/// meshd-protocol's `merkle` module builds it.
/// @dev The anchored root is over one *summary leaf* per finalized summary of
/// the range. A proof of a report, reward or energy amount is two proofs: the
/// summary leaf under the anchored root, then the item's leaf under the
/// summary's `reportsRoot`, `rewardsRoot` or `energyRoot`.
library AnchoredSummary {
    /// @notice The fields of a summary leaf:
    /// `(uint64 region, uint64 epoch, bytes32 summaryHash, bytes32 reportsRoot, bytes32 rewardsRoot, bytes32 energyRoot)`.
    /// @param region The region's H3 cell index.
    /// @param epoch The summary's epoch.
    /// @param summaryHash keccak256 of the summary's wire encoding (meshd-protocol `codec::summary_hash`).
    /// @param reportsRoot Root of the accepted report ids, leaves `(bytes32 reportId)`.
    /// @param rewardsRoot Root of the rewards, leaves `(bytes32 gatewayId, uint256 units)`.
    /// @param energyRoot Root of the energy, leaves `(bytes32 meterId, uint256 wh)`.
    struct Summary {
        uint64 region;
        uint64 epoch;
        bytes32 summaryHash;
        bytes32 reportsRoot;
        bytes32 rewardsRoot;
        bytes32 energyRoot;
    }

    /// @notice The range `fromEpoch..=toEpoch` has no anchored root.
    error NotAnchored(uint64 fromEpoch, uint64 toEpoch);
    /// @notice The summary's epoch is outside the anchored range it is proven in.
    error EpochOutsideRange(uint64 epoch, uint64 fromEpoch, uint64 toEpoch);
    /// @notice The summary leaf is not under the anchored root.
    error InvalidSummaryProof();
    /// @notice The item's leaf is not under the summary's inner root (or that root is empty).
    error InvalidLeafProof();

    /// @notice The summary leaf: `keccak256(keccak256(abi.encode(region, epoch, summaryHash, reportsRoot, rewardsRoot, energyRoot)))`.
    /// @param summary The summary's fields.
    /// @return The leaf hash.
    function leaf(Summary calldata summary) internal pure returns (bytes32) {
        return keccak256(
            bytes.concat(
                keccak256(
                    abi.encode(
                        summary.region,
                        summary.epoch,
                        summary.summaryHash,
                        summary.reportsRoot,
                        summary.rewardsRoot,
                        summary.energyRoot
                    )
                )
            )
        );
    }

    /// @notice The leaf of an `(bytes32 id, uint256 amount)` pair: a reward or an energy amount.
    /// @param id The gateway or meter id.
    /// @param amount The reward units or Wh.
    /// @return The leaf hash.
    function amountLeaf(bytes32 id, uint256 amount) internal pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(id, amount))));
    }

    /// @notice Reverts unless `summary` is proven under the root anchored for `fromEpoch..=toEpoch`
    /// and its epoch lies in that range.
    /// @param anchor The anchor contract.
    /// @param fromEpoch The first epoch of the anchored range.
    /// @param toEpoch The last epoch of the anchored range.
    /// @param summary The summary's fields.
    /// @param proof The summary leaf's proof under the anchored root.
    function verifyAnchored(
        EpochAnchor anchor,
        uint64 fromEpoch,
        uint64 toEpoch,
        Summary calldata summary,
        bytes32[] calldata proof
    ) internal view {
        bytes32 root = anchor.rootOf(fromEpoch, toEpoch);
        if (root == bytes32(0)) revert NotAnchored(fromEpoch, toEpoch);
        if (summary.epoch < fromEpoch || summary.epoch > toEpoch) {
            revert EpochOutsideRange(summary.epoch, fromEpoch, toEpoch);
        }
        if (!MerkleProof.verifyCalldata(proof, root, leaf(summary))) revert InvalidSummaryProof();
    }

    /// @notice Reverts unless `(id, amount)` is proven under `innerRoot`; a zero root (an empty tree) proves nothing.
    /// @param innerRoot The summary's `rewardsRoot` or `energyRoot`.
    /// @param id The gateway or meter id.
    /// @param amount The reward units or Wh.
    /// @param proof The leaf's proof under `innerRoot`.
    function verifyAmount(bytes32 innerRoot, bytes32 id, uint256 amount, bytes32[] calldata proof) internal pure {
        if (innerRoot == bytes32(0) || !MerkleProof.verifyCalldata(proof, innerRoot, amountLeaf(id, amount))) {
            revert InvalidLeafProof();
        }
    }
}
