#!/usr/bin/env bash
# rlhf against transformers generate(), a plain PyTorch training loop and TRL's PPO on the
# same weights: sets up the project (.venv, libtorch), builds the release binary, then runs
# scripts/bench_compare.py with the given flags (e.g. --quick). Its EOS rows use the run
# that scripts/main.sh makes (runs/default) or --eos-run DIR. Run it on an idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release -p rlhf-actors --bin rlhf
exec python3 scripts/bench_compare.py "$@"
