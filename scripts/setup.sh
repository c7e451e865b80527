#!/usr/bin/env bash
# Idempotent set-up: a project venv (.venv, git-ignored) with torch==2.13.0, whose libtorch
# cargo builds against (.cargo/config.toml points LIBTORCH at .venv/libtorch), and
# transformers for the parity fixtures and checks. Re-running skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION=2.13.0
TRANSFORMERS_VERSION=5.24.0
python=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$python" -m venv .venv
fi
have() { .venv/bin/python -c "$1" >/dev/null 2>&1; }
if ! have "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')"; then
  echo "setup: installing torch==$TORCH_VERSION (about a minute)"
  .venv/bin/pip install --quiet --disable-pip-version-check "torch==$TORCH_VERSION"
fi
if ! have "import transformers, sys; sys.exit(transformers.__version__ != '$TRANSFORMERS_VERSION')"; then
  echo "setup: installing transformers==$TRANSFORMERS_VERSION"
  .venv/bin/pip install --quiet --disable-pip-version-check "transformers==$TRANSFORMERS_VERSION" safetensors
fi
torch_dir=$(.venv/bin/python -c "import torch, os; print(os.path.dirname(torch.__file__))")
if [ "$(readlink .venv/libtorch 2>/dev/null)" != "$torch_dir" ]; then
  ln -sfn "$torch_dir" .venv/libtorch
fi
if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; install Rust (rustup) first" >&2
  exit 1
fi
# Prometheus for actors/tests/prometheus.rs (the dashboard against a real scrape); CI runs
# this script as root on Debian, whose package is enough.
if ! command -v prometheus >/dev/null; then
  echo "setup: installing prometheus (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
