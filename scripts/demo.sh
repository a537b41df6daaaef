#!/usr/bin/env bash
# Brings up a local mesh of four gateways on this machine — four `meshd run`
# processes on loopback, with the synthetic source and 15-second epochs — and
# shows their committee finalizing epochs: every gateway prints the same
# summary hash for every epoch. The gateways anchor every two epochs on a
# local EVM chain (anvil, installed from the npm registry by
# chain/contracts/setup.sh and started here, with meshd's contracts deployed
# by `meshd chain deploy`). At the end it prints the finality latency, the
# gossip traffic per gateway and epoch and the anchored roots, then proves a
# gateway's reward from its store and verifies the proof against the chain.
#
#   bash scripts/demo.sh                      # until 4 epochs are final everywhere
#   DEMO_GATEWAYS=31 bash scripts/demo.sh     # a larger committee (4 to 64)
#   DEMO_EPOCHS=10 bash scripts/demo.sh       # more epochs
#   DEMO_EPOCHS=0 bash scripts/demo.sh        # run until Ctrl-C
#   DEMO_DIR=./demo bash scripts/demo.sh      # elsewhere than /tmp/meshd-demo
#   DEMO_PORT=5170 bash scripts/demo.sh       # p2p ports 5171-5174, API 5271-5274
#   DEMO_RELEASE=1 bash scripts/demo.sh       # an optimised build (slower to build, as a gateway runs)
#   DEMO_CHAIN=0 bash scripts/demo.sh         # no chain: consensus only (no anvil)
#
# With the chain, anvil listens on 127.0.0.1:$((DEMO_PORT + 200)) (4370 by
# default) with a block every second; its log is $DEMO_DIR/anvil.log.
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
chain="${DEMO_CHAIN:-1}"
# Anchoring period with the chain: every two epochs, so that the default
# four epochs give two anchored ranges.
anchor_every=2
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

pids=()        # the gateways', by gateway number - 1
anvil_pid=""
stop() {
    for pid in "${pids[@]}" $anvil_pid; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap stop EXIT INT TERM

chain_section=""
network_extra=""
if [ "$chain" = 1 ]; then
    # anvil comes from the npm registry (npm is installed by scripts/setup.sh).
    bash chain/contracts/setup.sh
    anvil=chain/contracts/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil
    rpc_port=$((port + 200))
    rpc="http://127.0.0.1:$rpc_port"
    echo "==> starting anvil at $rpc (log in $dir/anvil.log)" >&2
    "$anvil" --host 127.0.0.1 --port "$rpc_port" --hardfork cancun --block-time 1 > "$dir/anvil.log" 2>&1 &
    anvil_pid="$!"
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$rpc_port") 2>/dev/null; then break; fi
        sleep 0.1
    done
    # anvil's first account from its public test mnemonic: funded on every
    # anvil, never on a real chain.
    deployer_key=0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80
    deploy=("$meshd" chain deploy --rpc-url "$rpc" --private-key "$deployer_key" --epoch-seconds "$epoch_s"
        --fund-members 10)
    for n in "${gateways[@]}"; do deploy+=(--member "$dir/g$n/keys/gateway.key"); done
    echo "==> deploying the contracts, registering the $count gateways as the anchor committee" >&2
    "${deploy[@]}" > "$dir/deploy.txt"
    sed -n '1,/^$/p' "$dir/deploy.txt" | sed 's/^/    /' >&2
    chain_section="$(sed -n '/^\[chain\]/,$p' "$dir/deploy.txt")"
    network_extra="anchor_every_epochs = $anchor_every"
    anchor_contract="$(sed -n 's/^anchor_contract = "\(.*\)"/\1/p' "$dir/deploy.txt")"
fi

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
$network_extra

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

$chain_section
TOML
    "$meshd" config check "$dir/g$n/meshd.toml" >/dev/null
done

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

# The last whole anchoring period among the demo's epochs: wait until it is
# anchored, show every gateway's last anchor, then prove gateway 1's reward
# from its store (after it stops: sled locks the store) and verify the proof
# against the root on the chain.
last_anchored=$(( epochs / anchor_every * anchor_every - 1 ))
if [ "$chain" = 1 ] && [ "$last_anchored" -ge 0 ]; then
    anchored_to() {
        "$meshd" status --api "127.0.0.1:$((port + 100 + $1))" 2>/dev/null \
            | sed -n 's/^last anchor *epochs [0-9]*\.\.=\([0-9]*\), root .*: anchored in block.*/\1/p'
    }
    deadline=$(( $(date +%s) + 2 * epoch_s + 60 ))
    while :; do
        done_count=0
        for n in "${gateways[@]}"; do
            to="$(anchored_to "$n")"
            if [ -n "$to" ] && [ "$to" -ge "$last_anchored" ]; then done_count=$((done_count + 1)); fi
        done
        if [ "$done_count" -gt 0 ]; then break; fi
        if [ "$(date +%s)" -gt "$deadline" ]; then
            echo "demo: epochs up to $last_anchored were not anchored in time; logs in $dir/gN/meshd.log" >&2
            exit 1
        fi
        sleep 2
    done
    echo "==> anchored on the chain (EpochAnchor $anchor_contract); last anchor at each gateway:" >&2
    for n in "${gateways[@]}"; do "$meshd" status --api "127.0.0.1:$((port + 100 + n))" | sed -n 's/^last anchor */    g'"$n"' /p'; done
    region="$("$meshd" status --api "127.0.0.1:$((port + 101))" | sed -n 's/^region *//p')"
    kill "${pids[0]}" 2>/dev/null || true
    wait "${pids[0]}" 2>/dev/null || true
    proof="$dir/reward-proof.json"
    proven=0
    for epoch in $(seq "$last_anchored" -1 $((last_anchored - anchor_every + 1))); do
        if "$meshd" prove reward --store "$dir/g1/data" --region "$region" --epoch "$epoch" --id "${ids[0]}" \
            --anchor-every "$anchor_every" --out "$proof" 2>/dev/null; then
            echo "==> g1's reward of epoch $epoch, proven from its store ($proof):" >&2
            "$meshd" verify "$proof" --rpc-url "$rpc" --contract "$anchor_contract" | sed 's/^/    /' >&2
            proven=1
            break
        fi
    done
    if [ "$proven" -ne 1 ]; then
        echo "demo: no reward of g1 could be proven for epochs of the last anchored range" >&2
        exit 1
    fi
fi
echo "==> stopping the gateways" >&2
