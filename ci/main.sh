#!/usr/bin/env bash
# The main job: build bpu and run its self-test against the simulated BPU (the ledger node comes later).
set -euo pipefail
cd "$(dirname "$0")/.."
source ci/setup.sh
cargo build --release --quiet
./target/release/bpu devices
./target/release/bpu selftest --device "${BPU_DEVICE:-sim://}"
