#!/usr/bin/env bash
# Builds lake and runs the demo on embedded defaults (no services): init -> plan -> query.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lake-target}"
cargo build --release --locked
lake="$CARGO_TARGET_DIR/release/lake"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
"$lake" init demo
cd demo
"$lake" plan --auto-apply
"$lake" plan
"$lake" fetchdf "select * from demo.full_model"
