#!/usr/bin/env bash
# Every test: set up, then the whole workspace's unit and integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo test --workspace "$@"
