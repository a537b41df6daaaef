#!/usr/bin/env bash
# Compiles the contracts with the pinned solc and writes artifacts/ (ABI +
# bytecode, JSON, committed). With --check, compiles afresh and exits 1 when
# the committed artifacts differ (CI runs this).
#
#   chain/contracts/build.sh          rebuild artifacts/ after editing src/
#   chain/contracts/build.sh --check  verify artifacts/ match src/
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh
exec node scripts/build.mjs "$@"
