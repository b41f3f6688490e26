#!/usr/bin/env bash
# Fetches DuckDB's official prebuilt libduckdb.so of the exact version lake pins, from the npm registry package
# DuckDB publishes it in, verifies its checksum and caches it. Prints the folder holding libduckdb.so.
# Usage: scripts/fetch-duckdb.sh [CACHE_DIR]   (default: $LAKE_DUCKDB_CACHE or $HOME/.cache/lake-duckdb)
# build.rs runs this when DUCKDB_LIB_DIR is unset; `cargo build --features bundled` compiles DuckDB instead.
set -euo pipefail
version=1.5.5
package="@duckdb/node-bindings-linux-x64@1.5.5-r.5"
tarball_sha256=86d2bda909785550e8a14a57a8a4584827aff0e268d8f1a58c3fd48559f7020e
library_sha256=fc23f12e376c47be520f75221288281906e7942e8fd6f6ce4849198ba60d0405

case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) ;;
    *) echo "no pinned prebuilt libduckdb for $(uname -s)-$(uname -m): build with \`cargo build --release --features bundled\`" >&2
       exit 1 ;;
esac

cache="${1:-${LAKE_DUCKDB_CACHE:-$HOME/.cache/lake-duckdb}}/$version"
library="$cache/libduckdb.so"
if [ -f "$library" ] && echo "$library_sha256  $library" | sha256sum --check --status; then
    echo "$cache"
    exit 0
fi
command -v npm >/dev/null || { echo "npm is needed to fetch libduckdb $version ($package); or build with --features bundled" >&2; exit 1; }
mkdir -p "$cache"
work="$(mktemp -d "$cache/fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$package" >/dev/null) || { echo "npm pack $package failed" >&2; exit 1; }
tarball="$(ls "$work"/*.tgz)"
echo "$tarball_sha256  $tarball" | sha256sum --check --status \
    || { echo "checksum mismatch for $package: refusing to use it" >&2; exit 1; }
tar -xzf "$tarball" -C "$work" package/libduckdb.so package/LICENSE
echo "$library_sha256  $work/package/libduckdb.so" | sha256sum --check --status \
    || { echo "checksum mismatch for libduckdb.so in $package: refusing to use it" >&2; exit 1; }
cp "$work/package/LICENSE" "$cache/LICENSE"
# Rename last so a concurrent or interrupted fetch never leaves a partial library in place.
mv "$work/package/libduckdb.so" "$library.tmp.$$"
mv "$library.tmp.$$" "$library"
echo "$cache"
