#!/usr/bin/env bash
# `agent-session rekey` throughput on the ~1 GB transfer set of scripts/bench-transfer.sh
# (10,000 sessions of 10 items of ~10 KB): a plain SQLite store encrypted in place, then rotated
# to a new key; the same on Redis (SQLITE/REDIS only: set BACKENDS). Release build, test servers.
#   scripts/bench-rekey.sh [SESSIONS] [ITEMS_PER_SESSION] [ITEM_BYTES]
set -euo pipefail
cd "$(dirname "$0")/.."
SESSIONS=${1:-10000}
ITEMS=${2:-10}
BYTES=${3:-10000}
BACKENDS=${BACKENDS:-"sqlite redis"}
BIN=target/release/agent-session
cargo build --release -q -p agent-session-cli  # (a no-op when built)
# shellcheck disable=SC1091
source "${OAS_SERVERS_ENV:-target/test-servers.env}"
WORK=$(mktemp -d)
PREFIX="rekeybench_$$"
cleanup() {
  redis-cli -p 6390 --scan --pattern "$PREFIX:*" | xargs -r -n 1000 redis-cli -p 6390 del >/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# DATA=FILE reuses a data set made before (the same generator as scripts/bench-transfer.sh).
if [ -n "${DATA:-}" ]; then ln -s "$(realpath "$DATA")" "$WORK/data.jsonl"; else
python3 - "$SESSIONS" "$ITEMS" "$BYTES" >"$WORK/data.jsonl" <<'PY'
import json, random, string, sys
sessions, items, size = map(int, sys.argv[1:])
rnd = random.Random(7)
alphabet = string.ascii_letters + string.digits
for s in range(sessions):
    sid = json.dumps(f"bench-{s:06d}")
    for i in range(items):
        text = "".join(rnd.choices(alphabet, k=size))
        print(f'{{"session_id":{sid},"item":{{"type":"message","role":"user","n":{i},"content":"{text}"}}}}')
PY
fi
echo "input: $(du -m "$WORK/data.jsonl" | cut -f1) MB in $SESSIONS sessions"
OLD=$("$BIN" keygen)
NEW=$("$BIN" keygen)
export OAS_REKEY_OLD="$OLD" OAS_REKEY_BOTH="$NEW,$OLD"

rekey() { # name, URL
  /usr/bin/time -f "%M" -o "$WORK/rss" "$BIN" --url "$2" rekey --quiet >"$WORK/summary.json"
  python3 - "$1" "$WORK/summary.json" "$WORK/rss" <<'PY'
import json, sys
name, s, rss = sys.argv[1], json.load(open(sys.argv[2])), int(open(sys.argv[3]).read().split()[-1])
assert not s["failed"] and not s["interrupted"], s
print(f"{name:<34} {s['rekeyed']:>6} sessions {s['records']:>7} records {s['bytes'] / 1e6:8.1f} MB "
      f"{s['seconds']:7.1f} s {s['bytes'] / 1e6 / s['seconds']:7.1f} MB/s {s['records'] / s['seconds']:8.0f} records/s "
      f"peak RSS {rss / 1024:6.1f} MiB retries {s['retries']}")
PY
}

for backend in $BACKENDS; do
  case $backend in
    sqlite) URL="sqlite://$WORK/store.db" ;;
    redis) URL="${OAS_TEST_REDIS_URL}?prefix=$PREFIX" ;;
    *) echo "unknown backend $backend" >&2; exit 2 ;;
  esac
  sep='?'
  [[ $URL == *\?* ]] && sep='&'
  "$BIN" --url "$URL" import --quiet "$WORK/data.jsonl"
  rekey "$backend: plain -> encrypted" "$URL${sep}encryption_key_env=OAS_REKEY_OLD"
  rekey "$backend: rotation (old -> new key)" "$URL${sep}encryption_key_env=OAS_REKEY_BOTH"
  rekey "$backend: rerun (nothing to do)" "$URL${sep}encryption_key_env=OAS_REKEY_BOTH"
done
