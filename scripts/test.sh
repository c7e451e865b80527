#!/usr/bin/env bash
# Every test: set up, then the whole workspace's unit and integration tests (there are no
# doc tests; leaving them out keeps the runner's closing line the last real test binary's).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# No import circles between files (ARCHITECTURE.md's invariant).
python3 scripts/import_cycles.py src actors/src
cargo test --workspace --lib --bins --tests "$@"
