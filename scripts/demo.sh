#!/usr/bin/env bash
# Shows what meshd does today, on this machine, in a scratch directory:
# builds the `meshd` binary, creates a gateway identity, writes the documented
# default configuration, points it at the scratch directory with environment
# overrides, checks it and prints the gateway's id.
#
#   bash scripts/demo.sh                # scratch directory under /tmp
#   DEMO_DIR=./demo bash scripts/demo.sh   # elsewhere (MESHD_* names are
#                                          # reserved for config overrides)
#
# Running it again reuses the directory and its key: the identity is stable.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/setup.sh
. scripts/setup.sh

echo "==> building meshd" >&2
cargo build --locked -p meshd
target_dir="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
meshd="${target_dir:-target}/debug/meshd"
"$meshd" --version

dir="${DEMO_DIR:-${TMPDIR:-/tmp}/meshd-demo}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
key="$dir/keys/gateway.key"
config="$dir/meshd.toml"

echo "==> gateway identity: $key" >&2
if [ -f "$key" ]; then
    echo "(exists; reusing it)" >&2
else
    "$meshd" keys generate --out "$key"
fi
"$meshd" keys show "$key"

echo "==> default configuration: $config" >&2
"$meshd" config default > "$config"
grep -c '^\[' "$config" | sed 's/$/ sections written/' >&2

echo "==> checking it, with environment overrides for this directory" >&2
export MESHD_IDENTITY__KEY_FILE="$key"
export MESHD_STORAGE__PATH="$dir/data"
export MESHD_NETWORK__EPOCH_LENGTH_S=60
export MESHD_NETWORK__GRACE_PERIOD_S=10
"$meshd" config check "$config"

echo "==> a mistake is named with its file, line, key and fix:" >&2
broken="$dir/broken.toml"
sed 's/^epoch_length_s/epoch_lenght_s/' "$config" > "$broken"
if "$meshd" config check "$broken"; then
    echo "demo: the broken file was accepted" >&2
    exit 1
fi

echo "==> done. The local mesh (meshd run) comes in a later release." >&2
