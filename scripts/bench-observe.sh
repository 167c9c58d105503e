#!/usr/bin/env bash
# The cost of observe.rs with no tracing subscriber and no metrics recorder installed (#16's
# target: within 3%), with the turn workload of 3/10. A = this tree's release CLI; B = the same
# tree with `Store::from_backend` not wrapping the backend in `Observed` (a temporary git
# worktree, the one line patched, built with this tree's build directory so that only the
# library and the CLI are compiled again). Runs interleaved (B, A, B, A, ...: both see the same
# load), ROUNDS times per backend and client count; prints medians and A/B as a Markdown table.
#   scripts/bench-observe.sh [ROUNDS] [SECONDS] [BACKENDS...]   # default 5 rounds, 5 s, memory sqlite redis
# Redis needs the test servers (scripts/servers.sh start).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${1:-5}
SECS=${2:-5}
shift 2 || true
BACKENDS=("$@")
[ ${#BACKENDS[@]} -gt 0 ] || BACKENDS=(memory sqlite redis)
WORK=$(mktemp -d)
B_TREE="$WORK/tree-b"
cleanup() {
  git -C "$ROOT" worktree remove --force "$B_TREE" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

cargo build --release -q -p agent-session-cli
A="$ROOT/target/release/agent-session"
git -C "$ROOT" worktree add -q --detach "$B_TREE" HEAD
OBS=crates/openai-agents-session/src/observe.rs
grep -q 'backend: Observed::wrap(backend),' "$B_TREE/$OBS" || { echo "observe.rs changed: update this script's patch" >&2; exit 1; }
sed -i 's/backend: Observed::wrap(backend),/backend: { let _ = Observed::wrap; backend },/' "$B_TREE/$OBS"
(cd "$B_TREE" && CARGO_BUILD_BUILD_DIR="$ROOT/target" cargo build --release -q -p agent-session-cli)
B="$B_TREE/target/release/agent-session"
if printf '%s\n' "${BACKENDS[@]}" | grep -qx redis; then
  # shellcheck disable=SC1091
  source "${OAS_SERVERS_ENV:-target/test-servers.env}"
fi

url_of() { # backend, run dir
  case $1 in
    memory) echo "memory://?ttl=3600" ;;
    sqlite) echo "sqlite://$2/bench.db?ttl=3600" ;;
    redis) echo "${OAS_TEST_REDIS_URL}?ttl=3600&prefix=obsbench_$$_$RANDOM" ;;
  esac
}

echo "| backend | clients | turns/s without the layer (B) | with it (A) | A/B | turn p50 µs B | A |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for backend in "${BACKENDS[@]}"; do
  for clients in 1 64; do
    for round in $(seq "$ROUNDS"); do
      for which in B A; do
        bin=$B; [ "$which" = A ] && bin=$A
        dir=$(mktemp -d "$WORK/run.XXXX")
        timeout 300 "$bin" --url "$(url_of "$backend" "$dir")" bench --workload turns --concurrency "$clients" \
          --duration "$SECS" --warmup 1 --json >"$WORK/$backend-$clients-$which-$round.json"
        rm -rf "$dir"
      done
    done
    python3 - "$WORK" "$backend" "$clients" "$ROUNDS" <<'PY'
import json, statistics, sys
work, backend, clients, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
runs = lambda w: [json.load(open(f"{work}/{backend}-{clients}-{w}-{r}.json")) for r in range(1, rounds + 1)]
a, b = runs("A"), runs("B")
for r in a + b:
    assert r["errors"] == 0 and r["items_lost"] == 0, r.get("first_error")
med = lambda rs, f: statistics.median(f(r) for r in rs)
tps = lambda r: r["turns_per_sec"]
p50 = lambda r: r["ops"]["turn"]["p50_us"]
print(f"{backend} {clients} clients, turns/s per round: B {[round(tps(r)) for r in b]} A {[round(tps(r)) for r in a]}", file=sys.stderr)
print(f"| {backend} | {clients} | {med(b, tps):,.0f} | {med(a, tps):,.0f} | {med(a, tps) / med(b, tps):.3f} "
      f"| {med(b, p50):,.0f} | {med(a, p50):,.0f} |")
PY
  done
done
