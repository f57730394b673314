#!/usr/bin/env bash
# The Python package (python/): builds the abi3 wheel with maturin in the dev
# profile, so the dependencies `cargo test` compiled are reused, installs it in
# a venv and runs its pytest suite, which compares it with the CLI (and the
# CLI's ONNX export, run by onnxruntime, with emofuse's probabilities).
#
# usage: scripts/python-test.sh
# EMOFUSE_BIN picks the CLI binary (default target/debug/emofuse, as `cargo test` builds it).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/python-venv
[ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check maturin==1.16.0 numpy==2.4.6 pytest==9.2.0 onnxruntime==1.23.2
rm -rf target/wheels
"$venv/bin/maturin" build --locked --profile dev -m python/Cargo.toml -o target/wheels -i "$venv/bin/python"
"$venv/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps target/wheels/emofuse-*.whl
# From outside the source tree, so that the installed wheel is what is imported.
(cd target && EMOFUSE_BIN="${EMOFUSE_BIN:-$PWD/debug/emofuse}" "$PWD/python-venv/bin/python" -m pytest -q ../python/tests)
