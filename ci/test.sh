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
step "clippy";             cargo clippy --workspace --all-targets --quiet -- -D warnings
step "tests";              cargo test --workspace --quiet
step "yosys synthesis";    cargo xtask synth --top sha256_engine && cargo xtask synth --top bpu_top
step "done"
