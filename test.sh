#!/usr/bin/env bash
# Runs every test: unit tests of each crate, the end-to-end suite (real embedded Kafka-protocol
# broker, real Delta tables on disk, real HTTP on loopback) and an interop check with Python
# deltalake. Needs the Rust toolchain, a C compiler and make (librdkafka and SQLite build from
# bundled sources) and python3; installs the Python deltalake package when missing.
# Benchmarks are compiled, not run.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v cc >/dev/null || ! command -v make >/dev/null; then
  echo "installing a C toolchain (gcc, make) for librdkafka and SQLite" >&2
  if command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq build-essential >/dev/null
  else
    echo "need gcc and make" >&2; exit 1
  fi
fi
# An S3-compatible server for the object-store lake test, and Python deltalake for interop.
python3 -c 'import moto.server, flask, deltalake' 2>/dev/null ||
  python3 -m pip install --quiet --disable-pip-version-check 'moto[server]' deltalake pyarrow
export CARGO_TERM_COLOR=never
cargo test --workspace --all-targets --no-run
cargo test --workspace --all-targets -- --show-output

# Interop: another Delta implementation (Python deltalake) reads what gata wrote.
python3 tests/interop/read_lake.py "${CARGO_TARGET_DIR:-target}/debug/gata"
