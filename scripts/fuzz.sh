#!/usr/bin/env bash
# Coverage-guided fuzzing of the request decoder (libFuzzer through swiftc -sanitize=fuzzer,address).
#   scripts/fuzz.sh [RUNS] [--grow]   build Fuzz/RequestFuzzer.swift with FlowgateProtocol's sources and
#                               run RUNS inputs (default 1,000,000) starting from Fuzz/corpus/request.
#                               New inputs that add coverage go to .build-fuzz/corpus, or with --grow
#                               into the committed corpus (minimise it afterwards with -merge=1).
# CI runs it with a small RUNS (scripts/bootstrap.sh test). A crash leaves crash-* and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-1000000}
GROW=${2:-}
OUT=.build-fuzz
mkdir -p "$OUT" Fuzz/corpus/request
swiftc -O -sanitize=fuzzer,address -parse-as-library -module-name FlowgateProtocol -I Sources/CMsgPack \
    Sources/FlowgateProtocol/*.swift Fuzz/RequestFuzzer.swift -o "$OUT/request-fuzzer" 2> "$OUT/build.log" || {
    cat "$OUT/build.log" >&2; exit 1; }
# -rss_limit_mb bounds memory per input: an allocation sized by untrusted numbers fails the run.
NEW="$OUT/corpus"
[ "$GROW" = "--grow" ] && NEW=Fuzz/corpus/request
mkdir -p "$NEW"
"$OUT/request-fuzzer" "$NEW" Fuzz/corpus/request -runs="$RUNS" -max_len=65536 -rss_limit_mb=1024 \
    -malloc_limit_mb=256 -timeout=10 -print_final_stats=1 -artifact_prefix="$OUT/" > "$OUT/fuzz.log" 2>&1 || {
    tail -n 40 "$OUT/fuzz.log" >&2; echo "fuzz: the decoder crashed or broke a limit (input in $OUT/crash-*)" >&2; exit 1; }
grep -E "^(Done|stat::)" "$OUT/fuzz.log"
