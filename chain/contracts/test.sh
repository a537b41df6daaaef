#!/usr/bin/env bash
# The contracts' tests: the artifact check, then the end-to-end tests on a
# local anvil (127.0.0.1, a free port), which also print the gas of anchoring
# (committees of 4, 31, 64), a reward claim, a certificate mint and a retirement.
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh
node scripts/build.mjs --check
exec node scripts/test.mjs
