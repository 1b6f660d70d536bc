#!/usr/bin/env bash
# The test command: formatting, generated-file drift, RTL lint, clippy, all tests, RTL synthesis.
set -euo pipefail
cd "$(dirname "$0")/.."
source ci/setup.sh
export CARGO_TERM_COLOR=never

step() { echo; echo "=== $* ($(date +%T))"; }

step "rustfmt";            cargo fmt --all --check
step "generated files";    cargo xtask regen --check
step "verilator lint";     cargo xtask lint
# The ECDSA engine takes Yosys about ten minutes: run it beside the Rust steps.
step "yosys synthesis of ecdsa_engine (background)"
cargo xtask synth --top ecdsa_engine > target/synth-ecdsa.log 2>&1 &
synth_pid=$!
step "clippy";             cargo clippy --workspace --all-targets --quiet -- -D warnings
step "tests";              cargo test --workspace --quiet
step "yosys synthesis";    cargo xtask synth --top sha256_engine
cargo xtask synth --top bpu_top --blackbox ecdsa_engine
step "waiting for the ecdsa_engine synthesis"
if ! wait "$synth_pid"; then tail -50 target/synth-ecdsa.log; exit 1; fi
tail -1 target/synth-ecdsa.log
step "done"
