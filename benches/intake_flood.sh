#!/usr/bin/env bash
# A worker's peak RSS (VmHWM) while it runs N_RUNS intake payloads at the shipped concurrency
# (200, agent events slowed to DELAY ms so that 200 sessions stream at once) and N_BIG payloads
# of 20 MB wait on the same intake. Everything runs on a private redis-server and simulator
# (ports REDIS_PORT, SIM_PORT), killed at the end with all their data.
#
#   cargo build --release && benches/intake_flood.sh            # N_RUNS=1000 N_BIG=50 DELAY=1000
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$root/target/release/agentcron}
N_RUNS=${N_RUNS:-1000} N_BIG=${N_BIG:-50} DELAY=${DELAY:-1000}
REDIS_PORT=${REDIS_PORT:-6391} SIM_PORT=${SIM_PORT:-8791}
PREFIX=flood
dir=$(mktemp -d)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
  > "$dir/redis.log" 2>&1 &
redis_pid=$!
"$BIN" --config "$root/jobs.toml" sim --port "$SIM_PORT" > "$dir/sim.log" 2>&1 &
sim_pid=$!
worker_pid=
cleanup() {
  for pid in $worker_pid $sim_pid $redis_pid; do kill "$pid" 2> /dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
R="redis-cli -p $REDIS_PORT"
until $R PING > /dev/null 2>&1 && curl -sf "http://127.0.0.1:$SIM_PORT/_sim/faults" > /dev/null; do
  sleep 0.2
done

export REDIS_URL=redis://127.0.0.1:$REDIS_PORT AGENTCRON__REDIS__PREFIX=$PREFIX
export SCALEKIT_ENV_URL=http://127.0.0.1:$SIM_PORT ANTHROPIC_BASE_URL=http://127.0.0.1:$SIM_PORT
export SCALEKIT_CLIENT_ID=sim-client-id SCALEKIT_CLIENT_SECRET=sim-client-secret
export ANTHROPIC_API_KEY=sim-anthropic-key
export AGENTCRON__LIMITS__CREATES_PER_MINUTE=6000000 AGENTCRON__LIMITS__REQUESTS_PER_MINUTE=6000000
export AGENTCRON__OPS__BIND=127.0.0.1:0 AGENTCRON__TRANSCRIPTS__DIR=$dir/transcripts RUST_LOG=error
curl -sf -XPOST "http://127.0.0.1:$SIM_PORT/_sim/faults" -H 'content-type: application/json' \
  -d "{\"method\":\"POST\",\"path\":\"/v1/sessions/*/events\",\"event_delay_ms\":$DELAY}" > /dev/null
"$BIN" --config "$root/jobs.toml" setup > "$dir/setup.log" 2>&1

for i in $(seq 1 "$N_RUNS"); do
  printf 'LPUSH %s:intake '"'"'{"user":"u%s@x.test","run_id":"flood-%s"}'"'"'\n' "$PREFIX" "$i" "$i"
done | $R > /dev/null
if [ "$N_BIG" -gt 0 ]; then
  head -c $((20 * 1024 * 1024 - 40)) /dev/zero | tr '\0' x \
    | sed 's/^/{"user":"big@x.test","prompt":"/; s/$/"}/' | tr -d '\n' > "$dir/big.json"
  for _ in $(seq 1 "$N_BIG"); do $R -x LPUSH "$PREFIX:intake" < "$dir/big.json" > /dev/null; done
fi
echo "intake: $($R LLEN "$PREFIX:intake") payloads; redis $($R INFO memory | grep -m1 '^used_memory_human')"

start=$(date +%s.%N)
"$BIN" --config "$root/jobs.toml" worker > "$dir/worker.log" 2>&1 &
worker_pid=$!
peak_running=0
while :; do
  n_done=$($R ZCARD "$PREFIX:runs:state:succeeded")
  n_running=$($R ZCARD "$PREFIX:runs:state:running")
  [ "$n_running" -gt "$peak_running" ] && peak_running=$n_running
  [ "$n_done" -ge "$N_RUNS" ] && [ "$($R LLEN "$PREFIX:intake")" -eq 0 ] && break
  sleep 0.5
done
elapsed=$(echo "$(date +%s.%N) - $start" | bc)
hwm_kib=$(awk '/^VmHWM/{print $2}' "/proc/$worker_pid/status")
echo "runs succeeded $n_done, rejected $($R LLEN "$PREFIX:rejected"), at most $peak_running running at once, ${elapsed} s"
echo "worker peak RSS (VmHWM) $(echo "scale=1; $hwm_kib / 1024" | bc) MiB"
echo "redis $($R INFO memory | grep -m1 '^used_memory_peak_human'), redis-server VmHWM $(awk '/^VmHWM/{print $2}' "/proc/$redis_pid/status") KiB"
