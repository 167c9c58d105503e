#!/usr/bin/env bash
# The soak run (documented in docs/benchmarks.md, not run in CI): `agent-session bench`'s turn
# workload with mixed operations (get_items + add_items every turn, pop_item every 5th turn, a
# checked clear_session every 100th turn on a session) for 30 minutes against Redis and against SQLite, with a
# restart every 5 minutes:
#
#   * Redis: a private redis-server on its own port (AOF on, appendfsync always), SIGKILLed and
#     restarted on the same data directory; the one benchmark process rides through;
#   * SQLite: the benchmark process itself SIGKILLed and restarted on the same file; each new
#     process first checks (`--ledger`) that the sessions hold every write the killed one was
#     told had been applied.
#
# Every 10 s the benchmark prints a JSON line (turns/s, errors by kind, latency, RSS now and
# peak); this script adds restart events and writes a summary (summary.md) at the end.
#
#   bench/soak.sh                      # both, at the same time, niced: 30 minutes
#   SOAK_MINUTES=3 SOAK_RESTART_EVERY=60 bench/soak.sh redis   # a short try
#
# Environment: SOAK_MINUTES (30), SOAK_RESTART_EVERY (seconds, 300), SOAK_REPORT_EVERY (10),
# SOAK_CONCURRENCY (8), SOAK_SESSIONS (32), SOAK_REDIS_PORT (16479), SOAK_OUT (bench/results/<time>-soak),
# AGENT_SESSION (the binary: target/release/agent-session; build it with
# `cargo build --release -p agent-session-cli`). Never touches the shared test servers.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
MINUTES=${SOAK_MINUTES:-30}
RESTART_EVERY=${SOAK_RESTART_EVERY:-300}
REPORT_EVERY=${SOAK_REPORT_EVERY:-10}
CONCURRENCY=${SOAK_CONCURRENCY:-8}
SESSIONS=${SOAK_SESSIONS:-32}
PORT=${SOAK_REDIS_PORT:-16479}
BIN=${AGENT_SESSION:-$ROOT/target/release/agent-session}
OUT=${SOAK_OUT:-$ROOT/bench/results/$(date -u +%Y%m%dT%H%M%SZ)-soak}
DURATION=$((MINUTES * 60))
WHICH=${1:-both}

[ -x "$BIN" ] || { echo "soak: no binary at $BIN (cargo build --release -p agent-session-cli)" >&2; exit 2; }
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/oas-soak.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
# A function's own EXIT trap replaces cleanup: in the main shell it still has to run (in the
# background subshells of `both`, the main shell does it once both are done).
own_exit() { if [ "$BASHPID" = "$$" ]; then cleanup; fi; }

# The workload of both runs. Sessions >= concurrency: each session has one writer, so the
# checks at clear are exact.
WORKLOAD=(bench --workload turns --json --concurrency "$CONCURRENCY" --sessions "$SESSIONS"
    --pop-every 5 --clear-every 100 --limit 20 --warmup 0 --report-every "$REPORT_EVERY")

now() { date +%s.%N; }
event() { printf '{"event":"%s","at":%s%s}\n' "$2" "$(now)" "${3:-}" >>"$1"; }

# Prefixes every line of the benchmark's stderr with the time it was read (the interval lines are
# JSON objects: the time goes in as "at").
stamp() {
    while IFS= read -r line; do
        case $line in
            '{'*) printf '{"at":%s,%s\n' "$(now)" "${line#\{}" ;;
            *) printf '{"at":%s,"text":%s}\n' "$(now)" "$(printf '%s' "$line" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')" ;;
        esac
    done
}

redis_up() {
    # PING over bash's /dev/tcp: no redis-cli needed.
    for _ in $(seq 1 200); do
        if { exec 3<>"/dev/tcp/127.0.0.1/$PORT"; } 2>/dev/null; then
            printf 'PING\r\n' >&3
            if read -r -t 1 reply <&3 && [[ $reply == +PONG* ]]; then exec 3>&-; return 0; fi
            exec 3>&-
        fi
        sleep 0.05
    done
    return 1
}

start_redis() {
    nice -n 10 redis-server --port "$PORT" --bind 127.0.0.1 --dir "$WORK/redis" \
        --appendonly yes --appendfsync always --save '' --daemonize no \
        --logfile "$OUT/redis-server.log" &
    REDIS_PID=$!
    redis_up || { echo "soak: redis-server did not come up on port $PORT" >&2; exit 1; }
}

soak_redis() {
    local log=$OUT/redis.jsonl
    if { exec 3<>"/dev/tcp/127.0.0.1/$PORT"; } 2>/dev/null; then
        exec 3>&-
        echo "soak: port $PORT is taken (SOAK_REDIS_PORT)" >&2
        exit 2
    fi
    mkdir -p "$WORK/redis"
    start_redis
    event "$log" redis-server-started ",\"pid\":$REDIS_PID"
    local start
    start=$(date +%s)
    # The benchmark outlives the restarts: its store reconnects. (`nice` execs it: $! is its pid.)
    nice -n 10 "$BIN" --url "redis://127.0.0.1:$PORT/" "${WORKLOAD[@]}" --duration "$DURATION" \
        >"$OUT/redis-report.json" 2> >(stamp >>"$log") &
    local bench=$!
    trap 'kill -9 $bench $REDIS_PID 2>/dev/null; own_exit' EXIT
    local next=$((start + RESTART_EVERY))
    while kill -0 "$bench" 2>/dev/null; do
        if [ "$(date +%s)" -ge "$next" ] && [ "$next" -lt $((start + DURATION)) ]; then
            kill -9 "$REDIS_PID"
            wait "$REDIS_PID" 2>/dev/null || true
            event "$log" redis-server-killed
            start_redis
            event "$log" redis-server-restarted ",\"pid\":$REDIS_PID"
            next=$((next + RESTART_EVERY))
        fi
        sleep 0.5
    done
    wait "$bench" || true
    kill -9 "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
    event "$log" done
}

soak_sqlite() {
    local log=$OUT/sqlite.jsonl
    local db=$WORK/soak.db
    local args=("${WORKLOAD[@]}" --session-prefix soak: --ledger "$WORK/ledger" --keep)
    local start end segment=0
    start=$(date +%s)
    end=$((start + DURATION))
    while [ "$(date +%s)" -lt "$end" ]; do
        segment=$((segment + 1))
        local left=$((end - $(date +%s)))
        local life=$((left < RESTART_EVERY ? left : RESTART_EVERY))
        nice -n 10 "$BIN" --url "sqlite://$db" "${args[@]}" --duration $((life + 60)) \
            >>"$OUT/sqlite-reports.json" 2> >(stamp >>"$log") &
        local bench=$!
        trap 'kill -9 $bench 2>/dev/null; own_exit' EXIT
        event "$log" bench-started ",\"segment\":$segment,\"pid\":$bench"
        sleep "$life"
        kill -9 "$bench" 2>/dev/null || true
        wait "$bench" 2>/dev/null || true
        event "$log" bench-killed ",\"segment\":$segment"
    done
    # The last check: a run of one turn reads the ledger, checks every session, clears them.
    nice -n 10 "$BIN" --url "sqlite://$db" bench --workload turns --json \
        --concurrency "$CONCURRENCY" --sessions "$SESSIONS" --session-prefix soak: \
        --ledger "$WORK/ledger" --turns 1 --warmup 0 --report-every "$REPORT_EVERY" \
        >"$OUT/sqlite-final.json" 2> >(stamp >>"$log") || true
    event "$log" done
    ls -l "$db"* >"$OUT/sqlite-files.txt" 2>/dev/null || true
    wc -l <"$WORK/ledger" >"$OUT/sqlite-ledger-lines.txt"
}

case $WHICH in
    redis) soak_redis ;;
    sqlite) soak_sqlite ;;
    both)
        soak_redis &
        r=$!
        soak_sqlite &
        s=$!
        PIDS+=("$r" "$s")
        wait "$r" || true
        wait "$s" || true
        ;;
    *) echo "usage: bench/soak.sh [redis|sqlite|both]" >&2; exit 2 ;;
esac

python3 "$ROOT/bench/soak_summary.py" "$OUT" | tee "$OUT/summary.md"
