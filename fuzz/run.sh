#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 600), JOBS at a time
# (default 2), from the seed corpus in fuzz/corpus/<target> (what they find is
# kept in target/fuzz-corpus/<target>; crashes land in fuzz/artifacts/<target>),
# and prints each run's executions.
#
#   bash fuzz/run.sh [SECONDS [TARGET...]]   # needs: rustup toolchain install nightly; cargo install cargo-fuzz
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-600}
JOBS=${JOBS:-2}
targets=(proc_net netlink http_response baseline web_config checks)
if [ $# -gt 1 ]; then targets=("${@:2}"); fi
cargo +nightly fuzz build --release
mkdir -p target/fuzz-logs
run() {
  mkdir -p "target/fuzz-corpus/$1"
  cargo +nightly fuzz run --release "$1" "target/fuzz-corpus/$1" "fuzz/corpus/$1" \
    -- -max_total_time="$SECONDS_EACH" >"target/fuzz-logs/$1.log" 2>&1
}
status=0
for ((i = 0; i < ${#targets[@]}; i += JOBS)); do
  pids=()
  for t in "${targets[@]:i:JOBS}"; do run "$t" & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p" || status=1; done
done
echo "| target | seconds | executions | exec/s | corpus | crashes |"
echo "|---|---|---|---|---|---|"
for t in "${targets[@]}"; do
  log=target/fuzz-logs/$t.log
  done_line=$(grep -E '^Done [0-9]+ runs' "$log" | tail -1 || true)
  runs=$(sed -E 's/^Done ([0-9]+) runs.*/\1/' <<<"$done_line")
  corpus=$(ls "target/fuzz-corpus/$t" | wc -l)
  crashes=$(ls "fuzz/artifacts/$t" 2>/dev/null | wc -l)
  echo "| $t | $SECONDS_EACH | ${runs:-?} | $(( ${runs:-0} / SECONDS_EACH )) | $corpus | $crashes |"
done
exit $status
