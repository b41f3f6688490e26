#!/usr/bin/env bash
# Property-based fuzzing of everything that reads a user's files (tests/it/fuzz.rs), for longer than CI does.
# Usage: scripts/fuzz.sh [SECONDS per target, default 60] [SEED, default random]
# Prints, per target, how many cases ran; a failure prints the shrunk input and the seed that reproduces it
# (rerun with the same SEED to get the same cases).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lake-target}"
seconds="${1:-60}"
seed="${2:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
echo "fuzzing each target for ${seconds}s with LAKE_FUZZ_SEED=$seed"
# One target at a time, so each gets a core's worth of its budget.
LAKE_FUZZ_SECONDS="$seconds" LAKE_FUZZ_SEED="$seed" \
    cargo test --release --locked --test it -- fuzz:: --nocapture --test-threads 1 2>&1 |
    grep -E '^fuzz |^test |panicked|minimal failing input|test result'
