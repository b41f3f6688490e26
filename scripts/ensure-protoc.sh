#!/usr/bin/env bash
# Makes sure `protoc` is installed: the Spark Connect client (apache-spark-connect) generates its gRPC code from
# Spark's .proto files at build time. Installs Debian's protobuf-compiler when run as root with apt-get.
set -euo pipefail
if command -v protoc >/dev/null || [ -n "${PROTOC:-}" ]; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update && apt-get install -y protobuf-compiler
else
    echo "protoc is required to build lake: install protobuf-compiler (apt-get install protobuf-compiler) or set PROTOC" >&2
    exit 1
fi
