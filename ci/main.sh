#!/usr/bin/env bash
# The main job: build bpu, self-test the simulated BPU, build the example contracts, and bring up
# a local network (`bpu up`, in bpu-net/; Ctrl-C stops it). BPU_DEVICE picks the node's crypto
# backend (default cpu; sim:// runs it on the simulated BPU); extra arguments go to `bpu up`.
set -euo pipefail
cd "$(dirname "$0")/.."
source ci/setup.sh
cargo build --release --quiet
./target/release/bpu devices
./target/release/bpu selftest --device sim://
bash contracts/build.sh
exec ./target/release/bpu up --device "${BPU_DEVICE:-cpu}" "$@"
