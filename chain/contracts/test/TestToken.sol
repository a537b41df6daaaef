// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title TestToken
/// @notice A reward token for tests only: 6 decimals, the whole supply minted to the deployer.
contract TestToken is ERC20 {
    /// @notice Mints `supply` base units to the deployer.
    /// @param supply The total supply.
    constructor(uint256 supply) ERC20("meshd test reward", "MTEST") {
        _mint(msg.sender, supply);
    }

    /// @notice 6 decimals: one token is one reward unit (10^6 sub-units).
    /// @return 6.
    function decimals() public pure override returns (uint8) {
        return 6;
    }
}
