#!/usr/bin/env bash
# The main job on the embedded default: set up, build, and run the pipeline end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release -p rlhf-actors --bin rlhf
./target/release/rlhf pipeline --config "${1:-configs/default.toml}"
