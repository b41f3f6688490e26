#!/usr/bin/env bash
# Runs the whole test suite in the one cargo profile that also builds lake (bundled DuckDB compiles once).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lake-target}"
cargo test --release --locked "$@"
