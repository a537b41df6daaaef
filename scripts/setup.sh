#!/usr/bin/env bash
# Makes a fresh Debian/Ubuntu machine ready to build meshd: puts cargo on the
# PATH and installs the missing system packages. Idempotent: installs only
# what is missing and changes nothing when everything is present.
#
#   protoc   (protobuf-compiler)  protobuf code generation at build time
#   google/protobuf/*.proto (libprotobuf-dev)  well-known types chirpstack_api imports
#   cc       (gcc, libc6-dev)     linker and C parts of dependencies
#   npm      (nodejs, npm)        installs anvil (demo and tests) and solc (tests)
#
# Sourced by scripts/demo.sh and scripts/test.sh; can also be run alone.
set -euo pipefail

# rustup installs into ~/.cargo/bin, which a non-login shell may not have.
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck source=/dev/null
    . "$HOME/.cargo/env"
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found; install Rust with rustup: https://rustup.rs" >&2
    exit 1
fi

missing=()
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
[ -f /usr/include/google/protobuf/timestamp.proto ] || missing+=(libprotobuf-dev)
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)

if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing ${missing[*]} and not root; install them with: sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    echo "setup: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
