#!/usr/bin/env bash
# Runs every fuzz target one after the other (one process each, niced), then minimizes each corpus.
#
#   fuzz/run.sh [SECONDS] [TARGET...]     # default: 300 s each, every target
#
# Prints each target's final libFuzzer line (executions, cov, ft, corpus) into
# target/fuzz-stats.txt. Needs cargo-fuzz (docs/testing.md, "Fuzzing").
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="$PWD/target"
unset CARGO_BUILD_BUILD_DIR
secs=${1:-300}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
cargo fuzz build -O -a
mkdir -p target
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  log="target/fuzz-$t.log"
  nice cargo fuzz run -O -a "$t" "corpus/$t" -- -max_total_time="$secs" \
    -print_final_stats=1 -rss_limit_mb=2048 >"$log" 2>&1 || echo "$t: CRASHED (input in artifacts/$t/), see $log" | tee -a target/fuzz-stats.txt
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
  final=$(grep -aE 'DONE' "$log" | tail -n 1 || true)
  nice cargo fuzz cmin -O -a "$t" "corpus/$t" -- -use_counters=0 >"target/cmin-$t.log" 2>&1
  files=$(find "corpus/$t" -type f | wc -l)
  bytes=$(du -sb "corpus/$t" | cut -f1)
  echo "$t: ${secs}s, $execs executions, last line: $final; after cmin: $files files, $bytes bytes" | tee -a target/fuzz-stats.txt
done
