#!/usr/bin/env bash
# Installs the system tools the test suite needs and a fresh machine may lack.
#
# meshd-gossip's NAT traversal test (gossip/tests/nat_traversal.rs) builds its
# own network namespaces with `ip` (iproute2) and NAT routers with `iptables`
# masquerade. The ChirpStack MQTT and meter MQTT tests
# (daemon/tests/chirpstack_mqtt.rs, daemon/tests/local_mesh.rs) start their
# own broker from /usr/sbin/mosquitto. Node.js and npm, for the contracts'
# tests, come with scripts/setup.sh. All are Debian packages. The script is
# idempotent: it installs only what is missing and does nothing when
# everything is present.
set -euo pipefail

missing=()
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
[ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-test-deps: missing ${missing[*]} and not root; install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi

echo "install-test-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
