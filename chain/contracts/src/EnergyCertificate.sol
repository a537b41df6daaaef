// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {ERC1155} from "@openzeppelin/contracts/token/ERC1155/ERC1155.sol";

import {AnchoredSummary} from "./AnchoredSummary.sol";
import {EpochAnchor} from "./EpochAnchor.sol";
import {GatewayRegistry} from "./GatewayRegistry.sol";

/// @title EnergyCertificate
/// @notice Renewable Energy Certificates (RECs) of meshd meters, as ERC-1155
/// tokens: one certificate per MWh a meter is proven to have produced in
/// anchored summaries, issued to the meter's registered owner. Certificates are
/// transferable and are *retired* (burned, with the beneficiary recorded) when
/// their energy is claimed for a use.
/// @dev Issuance. `mint` proves the meter's Wh of one epoch (the summary leaf
/// under an anchored root, then `(bytes32 meterId, uint256 wh)` under its
/// `energyRoot`), adds it to the meter's carried remainder, issues the whole
/// MWh and carries the rest, as meshd-protocol's `reward::certificates`. Each
/// meter's epochs are minted in increasing order (a per-meter cursor, which is
/// what makes a second mint of the same epoch impossible); an epoch skipped is
/// forfeited. Each mint that issues at least one certificate opens a *batch*,
/// the ERC-1155 id, recording the meter, the vintage epoch and the issue time.
///
/// Expiry. (1) Energy must be minted while the chain has anchored at most
/// `mintWindowEpochs` epochs past it: `anchor.nextEpoch() <= epoch + mintWindowEpochs + 1`.
/// (2) A certificate is valid for `VALIDITY` (365 days) from issue: after that
/// it can be neither transferred nor retired.
contract EnergyCertificate is ERC1155 {
    /// @notice Wh per certificate: 1 MWh, the unit of a REC (I-REC, EECS, US RECs);
    /// equal to meshd-protocol's `WH_PER_CERTIFICATE`.
    uint256 public constant WH_PER_CERTIFICATE = 1_000_000;
    /// @notice How long a certificate can be traded and retired after issue:
    /// twelve months, the usual vintage window of REC claims (e.g. RE100).
    uint256 public constant VALIDITY = 365 days;
    /// @notice Seconds per hour, to turn a meter's rated W into Wh per epoch.
    uint256 private constant SECONDS_PER_HOUR = 3600;

    /// @notice The anchor whose roots energy is proven against.
    EpochAnchor public immutable anchor;
    /// @notice The registry that names each meter's owner and rated capacity.
    GatewayRegistry public immutable registry;
    /// @notice The protocol's epoch length, s: no meter can attest more than
    /// `ratedWatts * epochSeconds / 3600` Wh in one epoch.
    uint64 public immutable epochSeconds;
    /// @notice How many epochs past an epoch may be anchored before its energy can no longer be minted.
    uint64 public immutable mintWindowEpochs;

    /// @notice One issue of certificates.
    /// @param meterId The meter that produced the energy.
    /// @param epoch The epoch whose energy completed the certificates (the vintage).
    /// @param issuedAt When they were issued, Unix s.
    struct Batch {
        bytes32 meterId;
        uint64 epoch;
        uint64 issuedAt;
    }

    /// @notice A meter's issuance state.
    /// @param nextEpoch The first epoch it may still mint.
    /// @param carryWh Wh proven but not yet issued (below 1 MWh).
    struct MeterAccount {
        uint64 nextEpoch;
        uint64 carryWh;
    }

    /// @notice A retirement: certificates burned for a beneficiary's energy use
    /// (two storage slots; the free-text note is in the `Retired` event only).
    /// @param beneficiary On whose behalf.
    /// @param batchId The batch retired from.
    /// @param holder Who retired them.
    /// @param amount Certificates retired.
    /// @param retiredAt When, Unix s (uint32 lasts until 2106).
    struct Retirement {
        address beneficiary;
        uint64 batchId;
        address holder;
        uint64 amount;
        uint32 retiredAt;
    }

    /// @notice The number of batches issued; batch ids are 1..=batchCount.
    uint256 public batchCount;
    mapping(uint256 batchId => Batch) private _batches;
    mapping(bytes32 meterId => MeterAccount) private _accounts;
    Retirement[] private _retirements;

    /// @notice `meterId`'s `wh` of `epoch` were credited: `certificates` issued in `batchId` (0: none), `carryWh` carried.
    event EnergyCredited(
        bytes32 indexed meterId, uint64 indexed epoch, uint256 wh, uint256 certificates, uint256 carryWh, uint256 batchId
    );
    /// @notice `amount` certificates of `batchId` were retired by `holder` for `beneficiary`.
    event Retired(
        uint256 indexed retirementId,
        uint256 indexed batchId,
        address indexed beneficiary,
        address holder,
        uint256 amount,
        string note
    );

    /// @notice The meter is not registered.
    error UnknownMeter(bytes32 meterId);
    /// @notice The meter's epoch was already minted, or an earlier one than its last.
    error EpochAlreadyMinted(bytes32 meterId, uint64 epoch, uint64 nextEpoch);
    /// @notice The chain has anchored too far past the epoch: its energy can no longer be minted.
    error MintWindowClosed(uint64 epoch, uint64 anchorNextEpoch);
    /// @notice The energy exceeds what the meter's rated capacity can produce in one epoch.
    error ExceedsCapacity(bytes32 meterId, uint256 wh, uint256 maxWh);
    /// @notice The batch does not exist.
    error UnknownBatch(uint256 batchId);
    /// @notice The batch's certificates are past their validity.
    error CertificateExpired(uint256 batchId, uint256 expiredAt);
    /// @notice Retiring needs a positive amount (below 2^64) and a beneficiary.
    error InvalidRetirement();
    /// @notice A constructor argument is zero.
    error ZeroArgument();

    /// @notice Deploys the certificate contract.
    /// @param anchor_ The anchor contract.
    /// @param registry_ The registry.
    /// @param epochSeconds_ The protocol's epoch length, s (positive).
    /// @param mintWindowEpochs_ The mint window, epochs.
    /// @param uri_ The ERC-1155 metadata URI template.
    constructor(
        EpochAnchor anchor_,
        GatewayRegistry registry_,
        uint64 epochSeconds_,
        uint64 mintWindowEpochs_,
        string memory uri_
    ) ERC1155(uri_) {
        if (address(anchor_) == address(0) || address(registry_) == address(0) || epochSeconds_ == 0) {
            revert ZeroArgument();
        }
        anchor = anchor_;
        registry = registry_;
        epochSeconds = epochSeconds_;
        mintWindowEpochs = mintWindowEpochs_;
    }

    /// @notice Credits a meter's proven energy of one epoch and issues the whole MWh to its owner.
    /// @dev Anybody may submit; the certificates go to the meter's registered owner.
    /// @param fromEpoch The first epoch of the anchored range that holds the summary.
    /// @param toEpoch The last epoch of that range.
    /// @param summary The summary leaf's fields.
    /// @param summaryProof The summary leaf's proof under the anchored root.
    /// @param meterId The meter (its ed25519 key).
    /// @param wh Its energy in the summary's energy tree, Wh.
    /// @param energyProof The energy leaf's proof under `summary.energyRoot`.
    /// @return batchId The batch issued (0 when the energy completed no MWh).
    /// @return certificates The number of certificates issued.
    function mint(
        uint64 fromEpoch,
        uint64 toEpoch,
        AnchoredSummary.Summary calldata summary,
        bytes32[] calldata summaryProof,
        bytes32 meterId,
        uint256 wh,
        bytes32[] calldata energyProof
    ) external returns (uint256 batchId, uint256 certificates) {
        uint64 epoch = summary.epoch;
        MeterAccount memory account = _accounts[meterId];
        if (epoch < account.nextEpoch) revert EpochAlreadyMinted(meterId, epoch, account.nextEpoch);
        uint64 anchorNext = anchor.nextEpoch();
        if (uint256(anchorNext) > uint256(epoch) + mintWindowEpochs + 1) revert MintWindowClosed(epoch, anchorNext);
        AnchoredSummary.verifyAnchored(anchor, fromEpoch, toEpoch, summary, summaryProof);
        AnchoredSummary.verifyAmount(summary.energyRoot, meterId, wh, energyProof);

        GatewayRegistry.Meter memory meter = registry.meter(meterId);
        if (meter.owner == address(0)) revert UnknownMeter(meterId);
        uint256 maxWh = uint256(meter.ratedWatts) * epochSeconds / SECONDS_PER_HOUR;
        if (wh > maxWh) revert ExceedsCapacity(meterId, wh, maxWh);

        uint256 total = account.carryWh + wh;
        certificates = total / WH_PER_CERTIFICATE;
        uint256 carry = total % WH_PER_CERTIFICATE;
        _accounts[meterId] = MeterAccount(epoch + 1, uint64(carry));
        if (certificates > 0) {
            batchId = ++batchCount;
            _batches[batchId] = Batch(meterId, epoch, uint64(block.timestamp));
        }
        emit EnergyCredited(meterId, epoch, wh, certificates, carry, batchId);
        if (certificates > 0) _mint(meter.owner, batchId, certificates, "");
    }

    /// @notice Retires (burns) `amount` of the caller's certificates of `batchId` for `beneficiary`.
    /// @param batchId The batch.
    /// @param amount How many certificates.
    /// @param beneficiary Whose energy use they cover.
    /// @param note A free text for the record (e.g. the claim's reporting period).
    /// @return retirementId The index of the retirement record.
    function retire(uint256 batchId, uint256 amount, address beneficiary, string calldata note)
        external
        returns (uint256 retirementId)
    {
        if (amount == 0 || amount > type(uint64).max || beneficiary == address(0)) revert InvalidRetirement();
        retirementId = _retirements.length;
        // Batch ids count up from 1 and stay far below 2^64; `_burn` rejects unknown ones.
        _retirements.push(
            Retirement(beneficiary, uint64(batchId), msg.sender, uint64(amount), uint32(block.timestamp))
        );
        _burn(msg.sender, batchId, amount);
        emit Retired(retirementId, batchId, beneficiary, msg.sender, amount, note);
    }

    /// @notice A batch's record (all zero when it does not exist).
    /// @param batchId The batch.
    /// @return The record.
    function batch(uint256 batchId) external view returns (Batch memory) {
        return _batches[batchId];
    }

    /// @notice When a batch's certificates expire, Unix s.
    /// @param batchId The batch.
    /// @return The expiry time.
    function expiresAt(uint256 batchId) public view returns (uint256) {
        uint64 issuedAt = _batches[batchId].issuedAt;
        if (issuedAt == 0) revert UnknownBatch(batchId);
        return uint256(issuedAt) + VALIDITY;
    }

    /// @notice A meter's issuance state: the first epoch it may still mint and its carried Wh.
    /// @param meterId The meter.
    /// @return The state.
    function meterAccount(bytes32 meterId) external view returns (MeterAccount memory) {
        return _accounts[meterId];
    }

    /// @notice A retirement record.
    /// @param retirementId Its index.
    /// @return The record.
    function retirement(uint256 retirementId) external view returns (Retirement memory) {
        return _retirements[retirementId];
    }

    /// @notice The number of retirements.
    /// @return The count.
    function retirementCount() external view returns (uint256) {
        return _retirements.length;
    }

    /// @dev Every movement but an issue (transfers and retirements) must happen before expiry.
    function _update(address from, address to, uint256[] memory ids, uint256[] memory values) internal override {
        if (from != address(0)) {
            for (uint256 i = 0; i < ids.length; ++i) {
                uint256 expiry = expiresAt(ids[i]);
                if (block.timestamp >= expiry) revert CertificateExpired(ids[i], expiry);
            }
        }
        super._update(from, to, ids, values);
    }
}
