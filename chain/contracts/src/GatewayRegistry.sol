// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// @title GatewayRegistry
/// @notice The on-chain list of meshd gateways and energy meters. Nodes read it
/// to know who may sit on a committee (a gateway's anchor address) and which
/// meters exist (their owner and rated capacity); the other meshd contracts read
/// it to pay rewards and certificates to the registered owners.
/// @dev Trust model. A gateway's identity is an ed25519 key, which the EVM
/// cannot verify (no precompile), so registration is done by accounts holding
/// `REGISTRAR_ROLE`: the registrar checks off-chain that the ed25519 key signed
/// the registration (owner, anchor address, location) and that the owner holds
/// the anchor key, then registers. The registrar can register, update and
/// remove; it cannot move funds or certificates. An owner may hand its gateway
/// or meter to a new owner without the registrar. `DEFAULT_ADMIN_ROLE` (a
/// multisig in production) grants and revokes registrars. Replacing the
/// registrar by on-chain proofs (a secp256k1 signature of the anchor key, an
/// ed25519 signature checked by a committee) is a later step.
contract GatewayRegistry is AccessControl {
    /// @notice The role that may register, update and remove gateways and meters.
    bytes32 public constant REGISTRAR_ROLE = keccak256("meshd.GatewayRegistry.REGISTRAR");

    /// @notice A registered gateway.
    /// @param owner The account that receives the gateway's rewards; zero when not registered.
    /// @param anchorAddress The EVM address of the gateway's secp256k1 anchor key.
    /// @param location The gateway's H3 cell index (any resolution, as asserted).
    struct Gateway {
        address owner;
        address anchorAddress;
        uint64 location;
    }

    /// @notice A registered energy meter.
    /// @param owner The account that receives the meter's certificates; zero when not registered.
    /// @param ratedWatts The meter's rated capacity in W: the most energy it can attest per second.
    struct Meter {
        address owner;
        uint64 ratedWatts;
    }

    /// @dev Gateways by ed25519 id.
    mapping(bytes32 gatewayId => Gateway) private _gateways;
    /// @dev Meters by ed25519 id.
    mapping(bytes32 meterId => Meter) private _meters;
    /// @dev The gateway that uses an anchor address: one address, one gateway.
    mapping(address anchorAddress => bytes32 gatewayId) private _gatewayOfAnchor;

    /// @notice A gateway was registered.
    event GatewayRegistered(bytes32 indexed gatewayId, address indexed owner, address indexed anchorAddress, uint64 location);
    /// @notice A gateway's anchor address or location changed.
    event GatewayUpdated(bytes32 indexed gatewayId, address indexed anchorAddress, uint64 location);
    /// @notice A gateway changed owner.
    event GatewayTransferred(bytes32 indexed gatewayId, address indexed from, address indexed to);
    /// @notice A gateway was removed.
    event GatewayRemoved(bytes32 indexed gatewayId);
    /// @notice A meter was registered.
    event MeterRegistered(bytes32 indexed meterId, address indexed owner, uint64 ratedWatts);
    /// @notice A meter's rated capacity changed.
    event MeterUpdated(bytes32 indexed meterId, uint64 ratedWatts);
    /// @notice A meter changed owner.
    event MeterTransferred(bytes32 indexed meterId, address indexed from, address indexed to);
    /// @notice A meter was removed.
    event MeterRemoved(bytes32 indexed meterId);

    /// @notice The id is zero, which no ed25519 key is.
    error ZeroId();
    /// @notice An owner or anchor address is the zero address.
    error ZeroAddress();
    /// @notice The gateway is already registered.
    error GatewayExists(bytes32 gatewayId);
    /// @notice The gateway is not registered.
    error UnknownGateway(bytes32 gatewayId);
    /// @notice Another gateway already uses this anchor address.
    error AnchorAddressInUse(address anchorAddress, bytes32 gatewayId);
    /// @notice The meter is already registered.
    error MeterExists(bytes32 meterId);
    /// @notice The meter is not registered.
    error UnknownMeter(bytes32 meterId);
    /// @notice A meter's rated capacity must be positive.
    error ZeroCapacity();
    /// @notice Only the registered owner may do this.
    error NotOwner(address caller, address owner);

    /// @notice Deploys the registry with `admin` holding the admin and registrar roles.
    /// @param admin The account (a multisig in production) that manages roles.
    constructor(address admin) {
        if (admin == address(0)) revert ZeroAddress();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(REGISTRAR_ROLE, admin);
    }

    // ---------------------------------------------------------------- gateways

    /// @notice Registers a gateway (registrar only).
    /// @param gatewayId The gateway's ed25519 public key.
    /// @param owner The account that receives its rewards.
    /// @param anchorAddress The address of its secp256k1 anchor key; not used by another gateway.
    /// @param location Its H3 cell index.
    function registerGateway(bytes32 gatewayId, address owner, address anchorAddress, uint64 location)
        external
        onlyRole(REGISTRAR_ROLE)
    {
        if (gatewayId == bytes32(0)) revert ZeroId();
        if (owner == address(0) || anchorAddress == address(0)) revert ZeroAddress();
        if (_gateways[gatewayId].owner != address(0)) revert GatewayExists(gatewayId);
        _claimAnchor(anchorAddress, gatewayId);
        _gateways[gatewayId] = Gateway(owner, anchorAddress, location);
        emit GatewayRegistered(gatewayId, owner, anchorAddress, location);
    }

    /// @notice Changes a gateway's anchor address and location (registrar only).
    /// @dev A committee already scheduled in `EpochAnchor` keeps the old address
    /// until the next committee is scheduled.
    /// @param gatewayId The gateway.
    /// @param anchorAddress Its new anchor address.
    /// @param location Its new H3 cell index.
    function updateGateway(bytes32 gatewayId, address anchorAddress, uint64 location)
        external
        onlyRole(REGISTRAR_ROLE)
    {
        Gateway storage record = _existingGateway(gatewayId);
        if (anchorAddress == address(0)) revert ZeroAddress();
        if (anchorAddress != record.anchorAddress) {
            delete _gatewayOfAnchor[record.anchorAddress];
            _claimAnchor(anchorAddress, gatewayId);
            record.anchorAddress = anchorAddress;
        }
        record.location = location;
        emit GatewayUpdated(gatewayId, anchorAddress, location);
    }

    /// @notice Removes a gateway (registrar only): it earns nothing more and leaves committees at their next change.
    /// @param gatewayId The gateway.
    function removeGateway(bytes32 gatewayId) external onlyRole(REGISTRAR_ROLE) {
        Gateway storage record = _existingGateway(gatewayId);
        delete _gatewayOfAnchor[record.anchorAddress];
        delete _gateways[gatewayId];
        emit GatewayRemoved(gatewayId);
    }

    /// @notice Hands a gateway to a new owner (its current owner only).
    /// @param gatewayId The gateway.
    /// @param newOwner The new owner.
    function transferGateway(bytes32 gatewayId, address newOwner) external {
        Gateway storage record = _existingGateway(gatewayId);
        if (msg.sender != record.owner) revert NotOwner(msg.sender, record.owner);
        if (newOwner == address(0)) revert ZeroAddress();
        record.owner = newOwner;
        emit GatewayTransferred(gatewayId, msg.sender, newOwner);
    }

    /// @notice The gateway registered under `gatewayId` (all zero when none).
    /// @param gatewayId The gateway's ed25519 public key.
    /// @return The gateway's record.
    function gateway(bytes32 gatewayId) external view returns (Gateway memory) {
        return _gateways[gatewayId];
    }

    /// @notice The owner of a gateway; reverts with `UnknownGateway` when it is not registered.
    /// @param gatewayId The gateway.
    /// @return The owner's account.
    function gatewayOwner(bytes32 gatewayId) external view returns (address) {
        address owner = _gateways[gatewayId].owner;
        if (owner == address(0)) revert UnknownGateway(gatewayId);
        return owner;
    }

    /// @notice The gateway whose anchor key has `anchorAddress` (zero when none).
    /// @param anchorAddress An anchor key's address.
    /// @return The gateway's id.
    function gatewayOfAnchor(address anchorAddress) external view returns (bytes32) {
        return _gatewayOfAnchor[anchorAddress];
    }

    // ------------------------------------------------------------------ meters

    /// @notice Registers an energy meter (registrar only).
    /// @param meterId The meter's ed25519 public key.
    /// @param owner The account that receives its certificates.
    /// @param ratedWatts Its rated capacity, W.
    function registerMeter(bytes32 meterId, address owner, uint64 ratedWatts) external onlyRole(REGISTRAR_ROLE) {
        if (meterId == bytes32(0)) revert ZeroId();
        if (owner == address(0)) revert ZeroAddress();
        if (ratedWatts == 0) revert ZeroCapacity();
        if (_meters[meterId].owner != address(0)) revert MeterExists(meterId);
        _meters[meterId] = Meter(owner, ratedWatts);
        emit MeterRegistered(meterId, owner, ratedWatts);
    }

    /// @notice Changes a meter's rated capacity (registrar only).
    /// @param meterId The meter.
    /// @param ratedWatts Its new rated capacity, W.
    function updateMeter(bytes32 meterId, uint64 ratedWatts) external onlyRole(REGISTRAR_ROLE) {
        Meter storage record = _existingMeter(meterId);
        if (ratedWatts == 0) revert ZeroCapacity();
        record.ratedWatts = ratedWatts;
        emit MeterUpdated(meterId, ratedWatts);
    }

    /// @notice Removes a meter (registrar only); certificates already issued stay valid.
    /// @param meterId The meter.
    function removeMeter(bytes32 meterId) external onlyRole(REGISTRAR_ROLE) {
        _existingMeter(meterId);
        delete _meters[meterId];
        emit MeterRemoved(meterId);
    }

    /// @notice Hands a meter to a new owner (its current owner only).
    /// @param meterId The meter.
    /// @param newOwner The new owner.
    function transferMeter(bytes32 meterId, address newOwner) external {
        Meter storage record = _existingMeter(meterId);
        if (msg.sender != record.owner) revert NotOwner(msg.sender, record.owner);
        if (newOwner == address(0)) revert ZeroAddress();
        record.owner = newOwner;
        emit MeterTransferred(meterId, msg.sender, newOwner);
    }

    /// @notice The meter registered under `meterId` (all zero when none).
    /// @param meterId The meter's ed25519 public key.
    /// @return The meter's record.
    function meter(bytes32 meterId) external view returns (Meter memory) {
        return _meters[meterId];
    }

    // --------------------------------------------------------------- internals

    function _existingGateway(bytes32 gatewayId) private view returns (Gateway storage gateway_) {
        gateway_ = _gateways[gatewayId];
        if (gateway_.owner == address(0)) revert UnknownGateway(gatewayId);
    }

    function _existingMeter(bytes32 meterId) private view returns (Meter storage meter_) {
        meter_ = _meters[meterId];
        if (meter_.owner == address(0)) revert UnknownMeter(meterId);
    }

    function _claimAnchor(address anchorAddress, bytes32 gatewayId) private {
        bytes32 holder = _gatewayOfAnchor[anchorAddress];
        if (holder != bytes32(0)) revert AnchorAddressInUse(anchorAddress, holder);
        _gatewayOfAnchor[anchorAddress] = gatewayId;
    }
}
