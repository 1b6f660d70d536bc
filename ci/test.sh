#!/usr/bin/env bash
# The test command: formatting, generated-file drift, RTL lint, clippy, all tests (with the services
# of ci/services.sh, stopped on exit), RTL synthesis.
set -euo pipefail
cd "$(dirname "$0")/.."
source ci/setup.sh
source ci/services.sh
export CARGO_TERM_COLOR=never
# For the gateway's tests: the tools ci/setup.sh installed (BPU_TEST_POSTGRES comes from
# services_start, below).
export BPU_PYTHON="$BPU_VENV/bin/python" BPU_SCHEMATHESIS="$BPU_VENV/bin/schemathesis"
export BPU_CHROMIUM=/usr/bin/chromium BPU_CHROMEDRIVER=/usr/bin/chromedriver
# The PostgreSQL variants of the gateway tests fail, instead of saying they did not run, when
# the server is missing.
export BPU_REQUIRE_POSTGRES=1

step() { echo; echo "=== $* ($(date +%T))"; }

step "rustfmt";            cargo fmt --all --check
step "generated files";    cargo xtask regen --check
step "verilator lint";     cargo xtask lint
# The ECDSA engine takes Yosys about ten minutes: run it beside the Rust steps.
step "yosys synthesis of ecdsa_engine (background)"
cargo xtask synth --top ecdsa_engine > target/synth-ecdsa.log 2>&1 &
synth_pid=$!
step "clippy";             cargo clippy --workspace --all-targets --quiet -- -D warnings
step "services";           trap services_stop EXIT; services_start
step "tests";              cargo test --workspace --quiet
services_stop
step "yosys synthesis";    cargo xtask synth --top sha256_engine
cargo xtask synth --top lthash_unit   # includes blake3_hasher
cargo xtask synth --top bpu_top --blackbox ecdsa_engine
step "waiting for the ecdsa_engine synthesis"
if ! wait "$synth_pid"; then tail -50 target/synth-ecdsa.log; exit 1; fi
tail -1 target/synth-ecdsa.log
step "done"
