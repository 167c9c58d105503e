#!/usr/bin/env bash
# Encryption overhead with the turn workload (docs/benchmarks.md, docs/encryption.md): for each
# backend and client count, runs `agent-session bench --workload turns` with encryption off and
# on, interleaved (off, on, off, on, ...: the machine is shared, so both see the same load),
# ROUNDS times each, and prints the medians as a Markdown table. Release build, test servers up.
#   scripts/bench-encryption.sh [ROUNDS] [SECONDS] [BACKENDS...]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-3}
shift 2 || true
BACKENDS=("$@")
[ ${#BACKENDS[@]} -gt 0 ] || BACKENDS=(memory sqlite redis postgres dynamodb)
BIN=target/release/agent-session
cargo build --release -q -p agent-session-cli  # (a no-op when built)
# shellcheck disable=SC1091
source "${OAS_SERVERS_ENV:-target/test-servers.env}"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
OAS_BENCH_KEY=$("$BIN" keygen)
export OAS_BENCH_KEY

url_of() { # backend -> URL (ttl=3600, as bench/compare runs ours)
  case $1 in
    memory) echo "memory://?ttl=3600" ;;
    sqlite) echo "sqlite://$WORK/bench.db?ttl=3600" ;;
    redis) echo "${OAS_TEST_REDIS_URL}?ttl=3600&prefix=encbench_$$" ;;
    postgres) echo "${OAS_TEST_POSTGRES_URL}&ttl=3600" ;;
    dynamodb) echo "dynamodb://encbench_$$?region=us-east-1&endpoint=${OAS_TEST_DYNAMODB_ENDPOINT}&create_table=true&ttl=3600" ;;
  esac
}

echo "| backend | clients | turns/s off | turns/s on | on/off | turn p50 µs off | on | turn p99 µs off | on | client CPU µs/turn off | on |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for backend in "${BACKENDS[@]}"; do
  base=$(url_of "$backend")
  sep='&'
  for clients in 1 64; do
    for round in $(seq "$ROUNDS"); do
      for mode in off on; do
        url=$base
        [ "$mode" = on ] && url="$base${sep}encryption_key_env=OAS_BENCH_KEY"
        timeout 300 "$BIN" --url "$url" bench --workload turns --concurrency "$clients" --duration "$SECS" \
          --warmup 1 --json >"$WORK/$backend-$clients-$mode-$round.json"
      done
    done
    python3 - "$WORK" "$backend" "$clients" "$ROUNDS" <<'PY'
import json, statistics, sys
work, backend, clients, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
def runs(mode):
    return [json.load(open(f"{work}/{backend}-{clients}-{mode}-{r}.json")) for r in range(1, rounds + 1)]
off, on = runs("off"), runs("on")
for r in off + on:
    assert r["errors"] == 0 and r["items_lost"] == 0, r.get("first_error")
assert all(r["settings"]["encryption"] not in (None, False, "off", "none") for r in on), on[0]["settings"]
med = lambda rs, f: statistics.median(f(r) for r in rs)
tps = lambda r: r["turns_per_sec"]
p50 = lambda r: r["ops"]["turn"]["p50_us"]
p99 = lambda r: r["ops"]["turn"]["p99_us"]
cpu = lambda r: r["client_cpu_us_per_turn"] or 0
print(f"| {backend} | {clients} | {med(off, tps):,.0f} | {med(on, tps):,.0f} | {med(on, tps) / med(off, tps):.2f} "
      f"| {med(off, p50):,.0f} | {med(on, p50):,.0f} | {med(off, p99):,.0f} | {med(on, p99):,.0f} "
      f"| {med(off, cpu):,.0f} | {med(on, cpu):,.0f} |")
PY
  done
done
