#!/usr/bin/env bash
# Builds and runs a libFuzzer target (optimised, with AddressSanitizer).
# Usage: scripts/fuzz.sh [seconds] [target] [runs]
#   scripts/fuzz.sh 600 FuzzXenstore             # ten minutes
#   scripts/fuzz.sh 0 FuzzConsoleRing 10000000   # ten million executions, however long
# Targets: FuzzXenstore FuzzConsoleRing FuzzXenstoreRing FuzzHypervisorRequest FuzzXLConfig.
# New crashes land in FuzzTesting/FailCases/<name>/, which `swift test` replays.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
target=${2:-FuzzXenstore}
runs=${3:--1}
name=$(echo "${target#Fuzz}" | tr '[:upper:]' '[:lower:]')
# SwiftPM passes -sanitize=fuzzer only when linking; the coverage instrumentation
# libFuzzer needs must be requested explicitly for every compiled module.
swift build -c release --scratch-path .build-fuzz --sanitize=fuzzer --sanitize=address \
    -Xswiftc -sanitize-coverage=edge,trace-cmp,inline-8bit-counters,pc-table --product "$target"
work=$(mktemp -d)
cp FuzzTesting/Corpus/"$name"/* "$work"/
mkdir -p FuzzTesting/FailCases/"$name"
SWIFT_BACKTRACE=enable=no .build-fuzz/release/"$target" -max_total_time="$seconds" -runs="$runs" \
    -rss_limit_mb=4096 -artifact_prefix=FuzzTesting/FailCases/"$name"/ -print_final_stats=1 "$work"
