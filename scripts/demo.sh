#!/usr/bin/env bash
# Brings up a local mesh of four gateways on this machine — four `meshd run`
# processes on loopback, with the synthetic source and 15-second epochs — and
# shows their committee finalizing epochs: every gateway prints the same
# summary hash for every epoch. At the end it prints the finality latency
# and the gossip traffic per gateway and epoch.
#
#   bash scripts/demo.sh                      # until 4 epochs are final everywhere
#   DEMO_GATEWAYS=31 bash scripts/demo.sh     # a larger committee (4 to 64)
#   DEMO_EPOCHS=10 bash scripts/demo.sh       # more epochs
#   DEMO_EPOCHS=0 bash scripts/demo.sh        # run until Ctrl-C
#   DEMO_DIR=./demo bash scripts/demo.sh      # elsewhere than /tmp/meshd-demo
#   DEMO_PORT=5170 bash scripts/demo.sh       # p2p ports 5171-5174, API 5271-5274
#   DEMO_RELEASE=1 bash scripts/demo.sh       # an optimised build (slower to build, as a gateway runs)
#
# Keys are kept between runs (the gateway ids stay the same); the data of
# the previous run is removed, since every run starts a new network (its
# genesis is the moment the demo starts). Logs: $DEMO_DIR/gN/meshd.log.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/setup.sh
. scripts/setup.sh

epochs="${DEMO_EPOCHS:-4}"
count="${DEMO_GATEWAYS:-4}"
if [ "$count" -lt 4 ] || [ "$count" -gt 64 ]; then
    echo "demo: DEMO_GATEWAYS must be 4 to 64 (a committee needs 4 for fault tolerance)" >&2
    exit 2
fi
port="${DEMO_PORT:-4170}"
# Epoch and grace lengths: long enough for a committee of four on loopback
# to decide with margin, short enough to watch several epochs in a minute.
epoch_s=15
grace_s=3

profile=debug
build=(cargo build --locked -p meshd)
if [ "${DEMO_RELEASE:-0}" = 1 ]; then
    profile=release
    build+=(--release)
fi
echo "==> building meshd ($profile)" >&2
"${build[@]}"
target_dir="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
meshd="${target_dir:-target}/$profile/meshd"
"$meshd" --version

dir="${DEMO_DIR:-${TMPDIR:-/tmp}/meshd-demo}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"

# Gateways on a grid in Berlin, about 1 km apart (0.009° of latitude, 0.015°
# of longitude): in one region, beyond the witness rules' 300 m minimum, well
# within radio range of each other.
side=1
while [ $((side * side)) -lt "$count" ]; do side=$((side + 1)); done
gateways=()
locations=()
for n in $(seq 1 "$count"); do
    gateways+=("$n")
    row=$(( (n - 1) / side )); col=$(( (n - 1) % side ))
    locations+=("$(awk -v r="$row" -v c="$col" 'BEGIN { printf "%.4f %.4f", 52.5200 + 0.009 * r, 13.4050 + 0.015 * c }')")
done
ids=()
for n in "${gateways[@]}"; do
    key="$dir/g$n/keys/gateway.key"
    if [ ! -f "$key" ]; then
        "$meshd" keys generate --out "$key" >/dev/null
    fi
    ids+=("$("$meshd" keys show "$key" | sed -n 's/^gateway id: *//p')")
done

genesis=$(( $(date +%s) + 2 ))
members="$(printf '"%s", ' "${ids[@]}")"
members="[${members%, }]"
for n in "${gateways[@]}"; do
    rm -rf "$dir/g$n/data"
    read -r lat lon <<<"${locations[$((n - 1))]}"
    bootstrap="[]"
    if [ "$n" -gt 1 ]; then
        bootstrap="[\"/ip4/127.0.0.1/tcp/$((port + 1))/p2p/${ids[0]}\"]"
    fi
    cat > "$dir/g$n/meshd.toml" <<TOML
# Gateway $n of the local demo mesh (written by scripts/demo.sh).
[network]
name = "meshd-demo"
genesis_unix_s = $genesis
epoch_length_s = $epoch_s
grace_period_s = $grace_s

[identity]
key_file = "$dir/g$n/keys/gateway.key"

[storage]
path = "$dir/g$n/data"

[p2p]
listen = ["/ip4/127.0.0.1/tcp/$((port + n))"]
bootstrap = $bootstrap
mdns = false

[api]
listen = "127.0.0.1:$((port + 100 + n))"

[gateway]
lat_deg = $lat
lon_deg = $lon

[registry]
members = $members

[synthetic]
enabled = true
TOML
    "$meshd" config check "$dir/g$n/meshd.toml" >/dev/null
done

pids=()
stop() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap stop EXIT INT TERM

echo "==> starting $count gateways (logs in $dir/gN/meshd.log)" >&2
for n in "${gateways[@]}"; do
    "$meshd" run --config "$dir/g$n/meshd.toml" > "$dir/g$n/meshd.log" 2>&1 &
    pids+=("$!")
    printf '    g%s  %s  api 127.0.0.1:%s\n' "$n" "${ids[$((n - 1))]}" "$((port + 100 + n))" >&2
done

# The latest finalized epoch and its summary hash of gateway n, "-" before any.
finalized() {
    "$meshd" status --api "127.0.0.1:$((port + 100 + $1))" 2>/dev/null \
        | sed -n 's/^last finalized *epoch \([0-9]*\) in round [0-9]*, summary \(0x[0-9a-f]*\).*/\1 \2/p'
}

echo "==> epochs are ${epoch_s} s; each is decided after its ${grace_s} s grace period" >&2
deadline=$(( $(date +%s) + (epochs + 3) * epoch_s + 30 ))
declare -A seen=()
declare -A summary_of=()   # "epoch" -> the first summary hash seen for it
mismatch=0
while :; do
    sleep 2
    for n in "${gateways[@]}"; do
        if ! kill -0 "${pids[$((n - 1))]}" 2>/dev/null; then
            echo "demo: gateway $n exited; its log:" >&2
            tail -n 20 "$dir/g$n/meshd.log" >&2
            exit 1
        fi
        read -r epoch hash <<<"$(finalized "$n")" || true
        if [ -n "${epoch:-}" ] && [ "${seen[$n]:-}" != "$epoch" ]; then
            seen[$n]="$epoch"
            printf 'g%s finalized epoch %s: summary %s\n' "$n" "$epoch" "$hash"
            if [ -z "${summary_of[$epoch]:-}" ]; then
                summary_of[$epoch]="$hash"
            elif [ "${summary_of[$epoch]}" != "$hash" ]; then
                echo "demo: gateway $n finalized a different summary for epoch $epoch" >&2
                mismatch=1
            fi
        fi
    done
    if [ "$epochs" -gt 0 ]; then
        done_count=0
        for n in "${gateways[@]}"; do
            if [ -n "${seen[$n]:-}" ] && [ "${seen[$n]}" -ge $((epochs - 1)) ]; then
                done_count=$((done_count + 1))
            fi
        done
        if [ "$done_count" -eq "$count" ]; then
            break
        fi
        if [ "$(date +%s)" -gt "$deadline" ]; then
            echo "demo: epochs did not finalize in time; logs in $dir/gN/meshd.log" >&2
            exit 1
        fi
    fi
done

echo "==> all $count gateways finalized epochs 0..$((epochs - 1)); latest at each:" >&2
for n in "${gateways[@]}"; do "$meshd" status --api "127.0.0.1:$((port + 100 + n))" | sed -n 's/^last finalized */    g'"$n"' /p'; done
regions="$(for n in "${gateways[@]}"; do "$meshd" status --api "127.0.0.1:$((port + 100 + n))" | sed -n 's/^region *//p'; done | sort -u | wc -l)"
if [ "$regions" -ne 1 ]; then
    echo "demo: the gateways are in $regions different regions; their grid crosses a region boundary" >&2
    mismatch=1
fi

# Finality latency (end of grace period to finalization, every gateway and
# epoch, from the logs) and gossip traffic per gateway and epoch (/metrics).
latencies="$(for n in "${gateways[@]}"; do cat "$dir/g$n/meshd.log"; done | sed -n 's/.*epoch finalized.*latency_ms=\([0-9]*\).*/\1/p' | sort -n)"
samples="$(printf '%s\n' "$latencies" | grep -c . || true)"
if [ "$samples" -gt 0 ]; then
    pick() { printf '%s\n' "$latencies" | awk -v q="$1" -v n="$samples" 'NR == int((n - 1) * q) + 1 { print; exit }'; }
    echo "==> finality latency over $samples samples: p50 $(pick 0.5) ms, p90 $(pick 0.9) ms, max $(pick 1) ms" >&2
fi
total_msgs=0; total_bytes=0; total_epochs=0
for n in "${gateways[@]}"; do
    scrape="$("$meshd" status --metrics --api "127.0.0.1:$((port + 100 + n))" 2>/dev/null || true)"
    value() { printf '%s\n' "$scrape" | awk -v m="$1" '$1 == m { print int($2) }'; }
    total_msgs=$((total_msgs + $(value meshd_node_published_total || echo 0)))
    total_bytes=$((total_bytes + $(value meshd_node_published_bytes_total || echo 0)))
    total_epochs=$((total_epochs + $(value meshd_node_finalized_total || echo 0)))
done
if [ "$total_epochs" -gt 0 ]; then
    echo "==> published per gateway and epoch: $((total_msgs / total_epochs)) messages, $((total_bytes / total_epochs)) bytes" >&2
fi
if [ "$mismatch" -ne 0 ]; then
    echo "demo: the gateways disagree on a summary" >&2
    exit 1
fi
echo "==> stopping the gateways" >&2
