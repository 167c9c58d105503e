#!/usr/bin/env bash
# Measures one very large session moving between stores: peak memory (RSS) must stay near the
# chunk size (8 MiB by default), not the session's size, because sessions larger than a chunk
# are read page by page and written through the target's staged write.
# Needs a release build and the test servers (scripts/servers.sh start).
#   scripts/bench-big-session.sh [ITEMS] [ITEM_BYTES] [DYNAMODB_ITEMS]
set -euo pipefail
cd "$(dirname "$0")/.."
ITEMS=${1:-5000}
BYTES=${2:-100000}
DDB_ITEMS=${3:-1000}
BIN=target/release/agent-session
cargo build -q --release -p agent-session-cli
# shellcheck disable=SC1091
source target/test-servers.env
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

gen() { # items -> one session "big" as JSON Lines
python3 - "$1" "$BYTES" <<'PY'
import random, string, sys
items, size = map(int, sys.argv[1:])
rnd = random.Random(11)
alphabet = string.ascii_letters + string.digits
for i in range(items):
    text = "".join(rnd.choices(alphabet, k=size))
    print(f'{{"session_id":"big","item":{{"type":"message","role":"user","n":{i},"content":"{text}"}}}}')
PY
}
gen "$ITEMS" >"$WORK/big.jsonl"
MB=$(du -m "$WORK/big.jsonl" | cut -f1)
echo "one session: $ITEMS items, $MB MB"

measure() { # name, megabytes moved, command...
  local name=$1 mb=$2; shift 2
  local start end secs rss
  start=$(date +%s.%N)
  /usr/bin/time -f "%M" -o "$WORK/rss" "$@"
  end=$(date +%s.%N)
  secs=$(echo "$end - $start" | bc)
  rss=$(cat "$WORK/rss")
  printf '%-34s %8.1f s %8.1f MB/s   peak RSS %6.1f MiB\n' "$name" "$secs" "$(echo "$mb / $secs" | bc -l)" "$(echo "$rss / 1024" | bc -l)"
}

SRC="sqlite://$WORK/src.db"
measure "import (jsonl -> sqlite)" "$MB" "$BIN" --url "$SRC" import --quiet "$WORK/big.jsonl"
measure "copy sqlite -> sqlite" "$MB" "$BIN" copy --quiet --from "$SRC" --to "sqlite://$WORK/dst.db"
"$BIN" --url "sqlite://$WORK/dst.db" add big '{"old":true}' >/dev/null
measure "copy --on-existing replace" "$MB" "$BIN" copy --quiet --on-existing replace --from "$SRC" --to "sqlite://$WORK/dst.db"
measure "export sqlite -> jsonl" "$MB" "$BIN" --url "$SRC" export --quiet -o "$WORK/out.jsonl"
cmp -s "$WORK/big.jsonl" "$WORK/out.jsonl" && echo "export equals the input, byte for byte"

REDIS="${OAS_TEST_REDIS_URL}?prefix=bigbench_$$"
measure "copy sqlite -> redis" "$MB" "$BIN" copy --quiet --from "$SRC" --to "$REDIS"
measure "copy redis -> sqlite" "$MB" "$BIN" copy --quiet --from "$REDIS" --to "sqlite://$WORK/from-redis.db"
"$BIN" --url "$REDIS" clear big

gen "$DDB_ITEMS" >"$WORK/ddb.jsonl"
DMB=$(du -m "$WORK/ddb.jsonl" | cut -f1)
DDB="dynamodb://bigbench_$$?region=us-east-1&endpoint=${OAS_TEST_DYNAMODB_ENDPOINT}&create_table=true"
"$BIN" --url "sqlite://$WORK/ddb-src.db" import --quiet "$WORK/ddb.jsonl"
measure "copy sqlite -> dynamodb ($DMB MB)" "$DMB" "$BIN" copy --quiet --from "sqlite://$WORK/ddb-src.db" --to "$DDB"
measure "copy dynamodb -> sqlite ($DMB MB)" "$DMB" "$BIN" copy --quiet --from "$DDB" --to "sqlite://$WORK/from-ddb.db"
"$BIN" --url "sqlite://$WORK/from-ddb.db" export --quiet -o "$WORK/ddb-out.jsonl"
cmp -s "$WORK/ddb.jsonl" "$WORK/ddb-out.jsonl" && echo "dynamodb round trip equals the input, byte for byte"
