#!/usr/bin/env bash
# Installs the contracts' toolchain into chain/contracts/node_modules (git-ignored):
# solc (pinned, the compiler of the committed artifacts), @openzeppelin/contracts
# (imported, never copied), and for the tests anvil, ethers and
# @openzeppelin/merkle-tree, all at the exact versions of package-lock.json.
# Needs Node.js 20 and npm. Idempotent: does nothing when node_modules matches the lock.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v npm >/dev/null 2>&1; then
    echo "chain/contracts/setup.sh: npm not found; install Node.js 20 (Debian: apt-get install -y nodejs npm)" >&2
    exit 1
fi
# npm writes node_modules/.package-lock.json after a complete install; if it
# equals the lock's packages, the tree is up to date.
if [ -f node_modules/.package-lock.json ] && [ node_modules/.package-lock.json -nt package-lock.json ]; then
    exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
