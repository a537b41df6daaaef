// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

import {AnchoredSummary} from "./AnchoredSummary.sol";
import {EpochAnchor} from "./EpochAnchor.sol";
import {GatewayRegistry} from "./GatewayRegistry.sol";

/// @title RewardDistributor
/// @notice Pays proof-of-coverage rewards in an ERC-20 token against anchored
/// roots, Merkle-distributor style: a gateway's reward of one region and epoch
/// is paid once, to the gateway's registered owner.
/// @dev A claim carries two proofs (see `AnchoredSummary`): the region's
/// summary leaf under the root anchored for a range containing its epoch, and
/// the leaf `(bytes32 gatewayId, uint256 units)` under that summary's
/// `rewardsRoot`. A claim is keyed by (region, epoch, gateway), so even two
/// summary leaves of one region and epoch could not pay a gateway twice.
/// Anybody may submit a claim; the tokens always go to the registered owner.
/// The contract pays from its own balance, which the treasury tops up.
contract RewardDistributor {
    using SafeERC20 for IERC20;

    /// @notice The anchor whose roots claims are proven against.
    EpochAnchor public immutable anchor;
    /// @notice The registry that names each gateway's owner.
    GatewayRegistry public immutable registry;
    /// @notice The reward token.
    IERC20 public immutable token;
    /// @notice Token base units paid per reward sub-unit: 1 for a token of 6
    /// decimals (meshd-protocol's `UNIT` is 10^6 sub-units), 10^12 for 18 decimals.
    uint256 public immutable tokensPerUnit;

    mapping(bytes32 claimKey => bool) private _claimed;

    /// @notice `gatewayId` was paid `amount` tokens (for `units` reward sub-units) of `region` and `epoch`.
    event Claimed(
        bytes32 indexed gatewayId, uint64 indexed epoch, uint64 region, address owner, uint256 units, uint256 amount
    );

    /// @notice This gateway's reward of this region and epoch was already paid.
    error AlreadyClaimed(bytes32 gatewayId, uint64 region, uint64 epoch);
    /// @notice A constructor argument is zero.
    error ZeroArgument();

    /// @notice Deploys the distributor.
    /// @param anchor_ The anchor contract.
    /// @param registry_ The gateway registry.
    /// @param token_ The reward token.
    /// @param tokensPerUnit_ Token base units per reward sub-unit (positive).
    constructor(EpochAnchor anchor_, GatewayRegistry registry_, IERC20 token_, uint256 tokensPerUnit_) {
        if (
            address(anchor_) == address(0) || address(registry_) == address(0) || address(token_) == address(0)
                || tokensPerUnit_ == 0
        ) revert ZeroArgument();
        anchor = anchor_;
        registry = registry_;
        token = token_;
        tokensPerUnit = tokensPerUnit_;
    }

    /// @notice Pays a gateway's reward of one summary to the gateway's owner.
    /// @param fromEpoch The first epoch of the anchored range that holds the summary.
    /// @param toEpoch The last epoch of that range.
    /// @param summary The summary leaf's fields.
    /// @param summaryProof The summary leaf's proof under the anchored root.
    /// @param gatewayId The gateway (its ed25519 key).
    /// @param units Its reward, in sub-units, as in the summary's reward tree.
    /// @param rewardProof The reward leaf's proof under `summary.rewardsRoot`.
    /// @return owner The account paid.
    /// @return amount The tokens paid.
    function claim(
        uint64 fromEpoch,
        uint64 toEpoch,
        AnchoredSummary.Summary calldata summary,
        bytes32[] calldata summaryProof,
        bytes32 gatewayId,
        uint256 units,
        bytes32[] calldata rewardProof
    ) external returns (address owner, uint256 amount) {
        bytes32 key = claimKey(gatewayId, summary.region, summary.epoch);
        if (_claimed[key]) revert AlreadyClaimed(gatewayId, summary.region, summary.epoch);
        AnchoredSummary.verifyAnchored(anchor, fromEpoch, toEpoch, summary, summaryProof);
        AnchoredSummary.verifyAmount(summary.rewardsRoot, gatewayId, units, rewardProof);
        _claimed[key] = true;
        owner = registry.gatewayOwner(gatewayId);
        amount = units * tokensPerUnit;
        emit Claimed(gatewayId, summary.epoch, summary.region, owner, units, amount);
        token.safeTransfer(owner, amount);
    }

    /// @notice Whether the reward of `gatewayId` in `region` and `epoch` was paid.
    /// @param gatewayId The gateway.
    /// @param region The region.
    /// @param epoch The epoch.
    /// @return True when paid.
    function isClaimed(bytes32 gatewayId, uint64 region, uint64 epoch) external view returns (bool) {
        return _claimed[claimKey(gatewayId, region, epoch)];
    }

    /// @notice The key a claim is recorded under: `keccak256(abi.encode(gatewayId, region, epoch))`.
    /// @param gatewayId The gateway.
    /// @param region The region.
    /// @param epoch The epoch.
    /// @return The key.
    function claimKey(bytes32 gatewayId, uint64 region, uint64 epoch) public pure returns (bytes32) {
        return keccak256(abi.encode(gatewayId, region, epoch));
    }
}
