#!/usr/bin/env bash
# agentcron vs BullMQ, no-op jobs, on one private Redis, alternating rounds (issue #28).
#
#   benches/compare.sh [--json]
#
# For each concurrency in $CONCS and each round 1..$ROUNDS: BullMQ (fill N jobs on db 1, then a
# Worker processes them, timed first→last `completed`, under the peers' measure.py for CPU), then
# `agentcron bench queue --jobs N --concurrency c --json` (db 0, its own random prefix; backlog
# N + min(N, 5000), timed from the worker's start) under measure.py too, each on a flushed db.
# Prints every round, then the median agentcron/BullMQ ratio per concurrency and whether the
# target (>= 2.0x at c200, >= 1.5x at c50) is met. It reports, it does not judge: the exit status
# is 0 unless something failed to run. With --json (or JSON=1) the per-round lines go to stderr
# and stdout gets one JSON object.
#
# Environment (defaults):
#   CONCS="200 50"  ROUNDS=3  N=30000  REDIS_PORT=6390 (started with --save "" --appendonly no
#   unless one already answers there; killed at exit only if this script started it)
#   AGENTCRON=$CARGO_TARGET_DIR/release/agentcron (built with `cargo build --release` if missing)
#   PEERS_DIR=<repo>/../shared/bench/peers  PEERS_TMP=/tmp/peers (npm installs, logs)
#   SETTLE_MAX=20: seconds to wait for a quiet machine before each timed run (common.sh's
#   settle; it runs anyway after that, and the per-run foreign CPU says how noisy it was).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
JSON="${JSON:-0}"
for arg in "$@"; do
  case "$arg" in
    --json) JSON=1 ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "compare.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done
PEERS_DIR="${PEERS_DIR:-$REPO/../shared/bench/peers}"
[ -f "$PEERS_DIR/lib/common.sh" ] || { echo "compare.sh: no $PEERS_DIR/lib/common.sh (set PEERS_DIR)" >&2; exit 1; }
PEERS_DIR="$(cd "$PEERS_DIR" && pwd)"
# shellcheck source=/dev/null
source "$PEERS_DIR/lib/common.sh"   # REDIS_HOST/REDIS_PORT (6390), PEERS_TMP, rcli, ensure_redis, settle
export SETTLE_MAX="${SETTLE_MAX:-20}"
CONCS="${CONCS:-200 50}"
ROUNDS="${ROUNDS:-3}"
N="${N:-30000}"
BULLMQ_VERSION="${BULLMQ_VERSION:-6.7.0}"
IOREDIS_VERSION="${IOREDIS_VERSION:-5.11.1}"
BULLMQ_DB=1      # bullmq/bench.js's default
AGENTCRON_DB=0   # agentcron's bench keys go under agentcron-bench-<uuid>: in another db anyway
AGENTCRON_URL="redis://$REDIS_HOST:$REDIS_PORT/$AGENTCRON_DB"

say() { if [ "$JSON" = 1 ]; then echo "$@" >&2; else echo "$@"; fi; }

# --- the private Redis ---------------------------------------------------------------------
STARTED_REDIS=""
W="$(mktemp -d "${TMPDIR:-/tmp}/agentcron-compare.XXXXXX")"
cleanup() {
  local code=$?
  if [ -n "$STARTED_REDIS" ] && kill -0 "$STARTED_REDIS" 2>/dev/null; then
    kill "$STARTED_REDIS" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$STARTED_REDIS" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$W"
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ! rcli ping >/dev/null 2>&1; then
  ensure_redis
  STARTED_REDIS="$(cat "$PEERS_TMP/redis-$REDIS_PORT.pid")"
else
  ensure_redis
  say "note: reusing the redis-server already on port $REDIS_PORT (pid $REDIS_PID); dbs $BULLMQ_DB and $AGENTCRON_DB get flushed"
fi
[ "$REDIS_PORT" != 6379 ] || say "warning: REDIS_PORT=6379 is the shared Redis: other tenants' traffic counts in every figure"

# --- BullMQ --------------------------------------------------------------------------------
NODE_DIR="$PEERS_TMP/node"
have() { node -p "require('$NODE_DIR/node_modules/$1/package.json').version" 2>/dev/null || true; }
if [ "$(have bullmq)" != "$BULLMQ_VERSION" ] || [ "$(have ioredis)" != "$IOREDIS_VERSION" ]; then
  say "installing bullmq@$BULLMQ_VERSION ioredis@$IOREDIS_VERSION into $NODE_DIR"
  npm --prefix "$NODE_DIR" install --no-audit --no-fund "bullmq@$BULLMQ_VERSION" "ioredis@$IOREDIS_VERSION" \
    >"$PEERS_TMP/logs/npm-bullmq.log" 2>&1 || { echo "npm install failed: $PEERS_TMP/logs/npm-bullmq.log" >&2; exit 1; }
fi
export NODE_PATH="$NODE_DIR/node_modules"
BULLMQ_VER="bullmq-$(have bullmq) ioredis-$(have ioredis) node-$(node -v | tr -d v)"
BENCH_JS="$PEERS_DIR/bullmq/bench.js"

# --- agentcron -----------------------------------------------------------------------------
if [ -z "${AGENTCRON:-}" ]; then
  AGENTCRON="${CARGO_TARGET_DIR:-$REPO/target}/release/agentcron"
  if [ ! -x "$AGENTCRON" ]; then
    say "building $AGENTCRON (cargo build --release)"
    (cd "$REPO" && cargo build --release) >&2
  fi
fi
[ -x "$AGENTCRON" ] || { echo "compare.sh: $AGENTCRON is not an executable" >&2; exit 1; }
AGENTCRON_COMMIT="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if ! git -C "$REPO" diff --quiet HEAD 2>/dev/null; then AGENTCRON_COMMIT="$AGENTCRON_COMMIT+dirty"; fi

# --- one round -----------------------------------------------------------------------------
LOG="$PEERS_TMP/logs/compare.log"; : >"$LOG"
ROWS="$W/rows.jsonl"; : >"$ROWS"
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
server_calls() { rcli info stats | awk -F: '/^total_commands_processed/{print $2}' | tr -d '\r'; }

bullmq_round() { # conc -> $W/bull.out (RATE line), $W/bull.m (one measure.py line)
  local c="$1"
  rcli -n "$BULLMQ_DB" flushdb >/dev/null
  REDIS_DB=$BULLMQ_DB timeout 180 node "$BENCH_JS" fill "$N" 2>>"$LOG"
  settle
  : >"$W/bull.m"
  REDIS_DB=$BULLMQ_DB timeout 180 python3 "$PEERS_DIR/lib/measure.py" "$W/bull.m" \
    node "$BENCH_JS" process "$N" "$c" >"$W/bull.out" 2>>"$LOG"
  local left; left="$(rcli -n "$BULLMQ_DB" llen bull:bench:wait)"
  [ "$left" = 0 ] || say "warning: $left BullMQ jobs left in bull:bench:wait"
  rcli -n "$BULLMQ_DB" flushdb >/dev/null
}

agentcron_round() { # conc -> $W/ac.json (its report), $W/ac.m (one measure.py line)
  local c="$1" before after
  rcli -n "$AGENTCRON_DB" flushdb >/dev/null
  settle
  : >"$W/ac.m"
  before="$(server_calls)"
  (cd "$REPO" && RUST_LOG=error AGENTCRON__REDIS__URL="$AGENTCRON_URL" REDIS_URL="$AGENTCRON_URL" \
    timeout 600 python3 "$PEERS_DIR/lib/measure.py" "$W/ac.m" \
    "$AGENTCRON" bench queue --jobs "$N" --concurrency "$c" --redis-url "$AGENTCRON_URL" --json) \
    >"$W/ac.json" 2>>"$LOG"
  after="$(server_calls)"
  # It must have run against this Redis (the bench takes --redis-url/REDIS_URL, not
  # AGENTCRON__REDIS__URL, and defaults to the shared 6379).
  if [ $((after - before)) -lt "$N" ]; then
    echo "compare.sh: agentcron sent only $((after - before)) commands to port $REDIS_PORT" >&2
    exit 1
  fi
  rcli -n "$AGENTCRON_DB" flushdb >/dev/null
}

# Appends one JSON row to $ROWS and prints its line.
record() { # conc round load_before
  python3 - "$@" "$W" "$N" >>"$ROWS" <<'PY'
import json, sys
conc, rnd, load, w, n = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
def measured(path):
    f = open(path).read().split()
    # maxrss_kb tree_rss_kb wall_s cmd_cpu_s redis_cpu_s foreign_cpu_s steal_s
    return {"wall_s": float(f[2]), "cpu_ms": round(float(f[3]) * 1000, 1),
            "redis_cpu_ms": round(float(f[4]) * 1000, 1),
            "foreign_cores": round(float(f[5]) / max(float(f[2]), 1e-9), 2),
            "peak_rss_mb": round(int(f[0]) / 1024, 1)}
rate = [l.split()[1] for l in open(f"{w}/bull.out") if l.startswith("RATE ")]
if not rate:
    sys.exit("compare.sh: BullMQ printed no RATE line (see the log)")
b = measured(f"{w}/bull.m")
bull = {"jobs": n, "jobs_per_sec": float(rate[0]),
        # whole node process (start, connect, process, close) and Redis over the same span
        "process_cpu_ms": b["cpu_ms"], "redis_cpu_ms": b["redis_cpu_ms"],
        "wall_s": b["wall_s"], "foreign_cores": b["foreign_cores"], "peak_rss_mb": b["peak_rss_mb"]}
r = json.load(open(f"{w}/ac.json"))
a = measured(f"{w}/ac.m")
backlog = r["jobs"] + r["enqueue_one_jobs"]
ac = {"jobs": backlog, "process_jobs_per_sec": r["process_jobs_per_sec"],
      "redis_commands_per_job": r["redis_commands_per_job"],
      # over the processing phase only (the report's own figures)
      "worker_cpu_ms": r.get("worker_cpu_ms"), "redis_cpu_ms": r.get("redis_cpu_ms"),
      "peak_rss_mb": r["peak_rss_mb"], "baseline_ping_per_sec": r["baseline"]["ping_per_sec"],
      "whole_run": {"wall_s": a["wall_s"], "process_cpu_ms": a["cpu_ms"],
                    "redis_cpu_ms": a["redis_cpu_ms"], "foreign_cores": a["foreign_cores"]}}
def per_job_us(ms, jobs):
    return None if ms is None else round(ms * 1000 / jobs, 1)
bull["process_cpu_us_per_job"] = per_job_us(bull["process_cpu_ms"], n)
bull["redis_cpu_us_per_job"] = per_job_us(bull["redis_cpu_ms"], n)
ac["worker_cpu_us_per_job"] = per_job_us(ac["worker_cpu_ms"], backlog)
ac["redis_cpu_us_per_job"] = per_job_us(ac["redis_cpu_ms"], backlog)
print(json.dumps({"concurrency": conc, "round": rnd, "loadavg": load, "bullmq": bull,
                  "agentcron": ac, "ratio": round(ac["process_jobs_per_sec"] / bull["jobs_per_sec"], 2)}))
PY
  python3 - "$(tail -n 1 "$ROWS")" <<'PY' | { if [ "$JSON" = 1 ]; then cat >&2; else cat; fi; }
import json, sys
r = json.loads(sys.argv[1]); b, a = r["bullmq"], r["agentcron"]
print(f"c{r['concurrency']:<4} round {r['round']}  BullMQ {b['jobs_per_sec']:>8.0f} jobs/s  "
      f"agentcron {a['process_jobs_per_sec']:>8.0f} jobs/s  ratio {r['ratio']:.2f}  "
      f"cmds/job {a['redis_commands_per_job']}  "
      f"CPU µs/job worker {b['process_cpu_us_per_job']} vs {a['worker_cpu_us_per_job']}, "
      f"redis {b['redis_cpu_us_per_job']} vs {a['redis_cpu_us_per_job']}  "
      f"foreign cores {b['foreign_cores']} / {a['whole_run']['foreign_cores']}  load {r['loadavg']}")
PY
}

say "agentcron $AGENTCRON_COMMIT ($AGENTCRON) vs $BULLMQ_VER; redis $(rcli info server | awk -F: '/^redis_version/{print $2}' | tr -d '\r') on port $REDIS_PORT; N=$N, rounds=$ROUNDS, concurrency $CONCS; load $(loadavg)"
LOAD_START="$(loadavg)"
for c in $CONCS; do
  for round in $(seq 1 "$ROUNDS"); do
    load="$(loadavg)"
    bullmq_round "$c"
    agentcron_round "$c"
    record "$c" "$round" "$load"
  done
done
LOAD_END="$(loadavg)"

# --- summary -------------------------------------------------------------------------------
python3 - "$ROWS" "$JSON" "$N" "$ROUNDS" "$LOAD_START" "$LOAD_END" "$AGENTCRON_COMMIT" "$BULLMQ_VER" "$REDIS_PORT" <<'PY'
import json, statistics, sys
rows_path, as_json, n, rounds, load0, load1, commit, bull_ver, port = sys.argv[1:]
rows = [json.loads(l) for l in open(rows_path)]
TARGETS = {200: 2.0, 50: 1.5}
summary = {}
for c in dict.fromkeys(r["concurrency"] for r in rows):
    rs = [r for r in rows if r["concurrency"] == c]
    med = lambda xs: round(statistics.median(xs), 2) if xs and None not in xs else None
    s = {"rounds": len(rs), "ratios": [r["ratio"] for r in rs],
         "median_ratio": med([r["ratio"] for r in rs]),
         "median_bullmq_jobs_per_sec": med([r["bullmq"]["jobs_per_sec"] for r in rs]),
         "median_agentcron_jobs_per_sec": med([r["agentcron"]["process_jobs_per_sec"] for r in rs]),
         "median_redis_commands_per_job": med([r["agentcron"]["redis_commands_per_job"] for r in rs])}
    target = TARGETS.get(c)
    s["target_ratio"] = target
    s["target_met"] = None if target is None else s["median_ratio"] >= target
    summary[str(c)] = s
lines = []
for c, s in summary.items():
    verdict = ("no target" if s["target_ratio"] is None else
               f"target >= {s['target_ratio']}: {'MET' if s['target_met'] else 'NOT MET'}")
    lines.append(f"c{c}: median ratio {s['median_ratio']:.2f} (rounds {', '.join(f'{x:.2f}' for x in s['ratios'])}; "
                 f"median BullMQ {s['median_bullmq_jobs_per_sec']:.0f}, agentcron {s['median_agentcron_jobs_per_sec']:.0f} jobs/s, "
                 f"{s['median_redis_commands_per_job']} Redis commands/job)  {verdict}")
# Met only when every targeted concurrency was run and met; None when one was not run.
if all(str(c) in summary for c in TARGETS):
    overall = all(summary[str(c)]["target_met"] for c in TARGETS)
    verdict = "MET" if overall else "NOT MET"
else:
    overall, verdict = None, "not established (run CONCS=\"200 50\")"
lines.append(f"issue #28 target (median >= 2.0x at c200, >= 1.5x at c50): {verdict}")
lines.append(f"load average {load0} at the start, {load1} at the end")
if as_json == "1":
    for l in lines:
        print(l, file=sys.stderr)
    print(json.dumps({"agentcron_commit": commit, "bullmq": bull_ver, "redis_port": int(port),
                      "jobs": int(n), "rounds_per_concurrency": int(rounds),
                      "loadavg_start": load0, "loadavg_end": load1, "rounds": rows,
                      "summary": summary, "target_met": overall}))
else:
    print()
    for l in lines:
        print(l)
PY
