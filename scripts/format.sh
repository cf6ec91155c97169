#!/usr/bin/env bash
# Formats every Swift file in place, then lints strictly (what CI checks).
set -euo pipefail
cd "$(dirname "$0")/.."
files=$(git ls-files -co --exclude-standard -- '*.swift')
swift format format --parallel --in-place $files
swift format lint --strict --parallel $files
