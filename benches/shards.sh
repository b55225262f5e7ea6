#!/usr/bin/env bash
# `agentcron bench queue` on one node (1 shard), on a Redis Cluster of one master (16 shards)
# and on a cluster of three masters (16 shards), alternating ROUNDS times in one run, so that
# the machine's load is shared alike. Every server is private (ports from BASE_PORT), with no
# persistence, and killed at the end.
#
#   cargo build --release && benches/shards.sh           # JOBS=30000 CONCURRENCY=200 ROUNDS=3
#   BENCH=fanout USERS=100000 benches/shards.sh            # a schedule tick's fan-out instead
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$root/target/release/agentcron}
JOBS=${JOBS:-30000} CONCURRENCY=${CONCURRENCY:-200} ROUNDS=${ROUNDS:-3}
BENCH=${BENCH:-queue} USERS=${USERS:-100000}
BASE_PORT=${BASE_PORT:-7300}
dir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2> /dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT

# server PORT [extra args...]
server() {
  local port=$1
  shift
  mkdir -p "$dir/$port"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir/$port" \
    "$@" > "$dir/$port/log" 2>&1 &
  pids+=($!)
  until redis-cli -p "$port" PING > /dev/null 2>&1; do sleep 0.1; done
}
node=$BASE_PORT one=$((BASE_PORT + 1)) three=($((BASE_PORT + 2)) $((BASE_PORT + 3)) $((BASE_PORT + 4)))
server "$node"
cluster=(--cluster-enabled yes --cluster-config-file nodes.conf --cluster-announce-ip 127.0.0.1)
server "$one" "${cluster[@]}"
redis-cli -p "$one" CLUSTER ADDSLOTSRANGE 0 16383 > /dev/null
for port in "${three[@]}"; do server "$port" "${cluster[@]}"; done
redis-cli --cluster create "${three[@]/#/127.0.0.1:}" --cluster-yes > "$dir/create.log"
for port in "$one" "${three[@]}"; do
  until redis-cli -p "$port" CLUSTER INFO | grep -q cluster_state:ok; do sleep 0.2; done
done

declare -A url=(
  [node]=redis://127.0.0.1:$node
  [cluster-1-master]=redis+cluster://127.0.0.1:$one
  [cluster-3-masters]=redis+cluster://127.0.0.1:${three[0]}
)
# Commands each of the three masters served, so the spread of one queue over them shows.
served() {
  for port in "${three[@]}"; do
    redis-cli -p "$port" INFO stats | tr -d '\r' | sed -n 's/^total_commands_processed://p'
  done | paste -sd' '
}
if [ "$BENCH" = fanout ]; then
  printf '%-18s %6s %12s %18s\n' target round "fan-out ms" "Redis cmds per user"
  for round in $(seq "$ROUNDS"); do
    for target in node cluster-1-master cluster-3-masters; do
      out=$(RUST_LOG=error "$BIN" bench fanout --redis-url "${url[$target]}" --users "$USERS" --json)
      printf '%-18s %6s %12s %18s\n' "$target" "$round" "$(jq -r .fanout_ms <<< "$out")" \
        "$(jq -r .redis_commands_per_user <<< "$out")"
    done
  done
  exit 0
fi
printf '%-18s %6s %14s %14s  %s\n' target round "process jobs/s" "enqueue jobs/s" \
  "commands per master (3 masters)"
for round in $(seq "$ROUNDS"); do
  for target in node cluster-1-master cluster-3-masters; do
    before=$(served)
    out=$(RUST_LOG=error "$BIN" bench queue --redis-url "${url[$target]}" --jobs "$JOBS" \
      --concurrency "$CONCURRENCY" --json)
    spread=""
    if [ "$target" = cluster-3-masters ]; then
      read -ra a <<< "$before"
      read -ra b <<< "$(served)"
      spread="${a:+$((b[0] - a[0])) $((b[1] - a[1])) $((b[2] - a[2]))}"
    fi
    printf '%-18s %6s %14s %14s  %s\n' "$target" "$round" \
      "$(jq -r .process_jobs_per_sec <<< "$out")" "$(jq -r .enqueue_jobs_per_sec <<< "$out")" \
      "$spread"
  done
done
