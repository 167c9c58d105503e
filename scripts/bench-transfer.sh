#!/usr/bin/env bash
# Measures copy throughput and peak memory (RSS) for ~1 GB of conversations: 10,000 sessions of
# ~100 KB (10 items of ~10 KB), sqlite -> sqlite and redis -> sqlite, and ~200 MB
# dynamodb -> sqlite. Needs a release build and the test servers (scripts/servers.sh start).
#   scripts/bench-transfer.sh [SESSIONS] [ITEMS_PER_SESSION] [ITEM_BYTES]
set -euo pipefail
cd "$(dirname "$0")/.."
SESSIONS=${1:-10000}
ITEMS=${2:-10}
BYTES=${3:-10000}
BIN=target/release/agent-session
[ -x "$BIN" ] || cargo build --release -p agent-session-cli
# shellcheck disable=SC1091
source target/test-servers.env
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

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
MB=$(du -m "$WORK/data.jsonl" | cut -f1)
echo "input: $MB MB in $SESSIONS sessions"

measure() { # name, megabytes moved, command...
  local name=$1 mb=$2; shift 2
  local start end
  start=$(date +%s.%N)
  /usr/bin/time -f "%M" -o "$WORK/rss" "$@"
  end=$(date +%s.%N)
  local secs rss
  secs=$(echo "$end - $start" | bc)
  rss=$(cat "$WORK/rss")
  printf '%-28s %8.1f s %8.1f MB/s   peak RSS %6.1f MiB\n' "$name" "$secs" "$(echo "$mb / $secs" | bc -l)" "$(echo "$rss / 1024" | bc -l)"
}

SRC="sqlite://$WORK/src.db"
measure "import (jsonl -> sqlite)" "$MB" "$BIN" --url "$SRC" import --quiet "$WORK/data.jsonl"
measure "copy sqlite -> sqlite" "$MB" "$BIN" copy --quiet --from "$SRC" --to "sqlite://$WORK/dst.db"
measure "export sqlite -> jsonl" "$MB" "$BIN" --url "$SRC" export --quiet -o "$WORK/out.jsonl"
cmp -s <(sort "$WORK/data.jsonl") <(sort "$WORK/out.jsonl") && echo "export equals the input"

REDIS="${OAS_TEST_REDIS_URL}?prefix=bench_$$"
"$BIN" copy --quiet --from "$SRC" --to "$REDIS"
measure "copy redis -> sqlite" "$MB" "$BIN" copy --quiet --from "$REDIS" --to "sqlite://$WORK/from-redis.db"
redis-cli -p 6390 --scan --pattern "bench_$$:*" | xargs -r -n 1000 redis-cli -p 6390 del >/dev/null

# DynamoDB Local: ~200 MB (a fifth of the sessions).
DDB="dynamodb://bench_$$?region=us-east-1&endpoint=${OAS_TEST_DYNAMODB_ENDPOINT}&create_table=true"
"$BIN" copy --quiet --prefix "bench-00" --from "$SRC" --to "$DDB"
"$BIN" copy --quiet --prefix "bench-01" --from "$SRC" --to "$DDB"
measure "copy dynamodb -> sqlite (1/5)" "$((MB / 5))" "$BIN" copy --quiet --from "$DDB" --to "sqlite://$WORK/from-ddb.db"
