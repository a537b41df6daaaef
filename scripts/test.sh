#!/usr/bin/env bash
# Runs the whole test suite of the workspace, after installing what a fresh
# machine lacks (see scripts/setup.sh and scripts/install-test-deps.sh).
#
#   bash scripts/test.sh            # every test of every crate
#   bash scripts/test.sh -p meshd   # extra arguments go to `cargo test`
#
# The output ends with cargo test's own `test result:` lines, one per test
# binary, which CI reads for the pass and fail counts.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/setup.sh
. scripts/setup.sh
if [ -x scripts/install-test-deps.sh ]; then
    scripts/install-test-deps.sh
fi

# The Solidity contracts: artifact check and end-to-end tests on a local anvil
# (skipped when arguments select part of the cargo suite).
if [ "$#" -eq 0 ]; then
    bash chain/contracts/test.sh
fi

# --locked: test exactly the dependency versions of Cargo.lock.
exec cargo test --workspace --locked "$@"
