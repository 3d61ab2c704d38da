#!/usr/bin/env bash
# Create .venv and install Dreamer with its test tools; re-running is cheap (skips when up to date).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then "$PYTHON" -m venv .venv; fi
# shellcheck disable=SC1091
. .venv/bin/activate
stamp=.venv/.dreamer-installed
want=$(cat pyproject.toml package-lock.json 2>/dev/null | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  python -m pip install -q --upgrade pip
  # The CPU wheel first: a bare `torch` requirement would pull a multi-GB CUDA build.
  python -m pip install -q "torch==2.13.0"
  python -m pip install -q -e ".[test]"
  if command -v npm >/dev/null 2>&1; then npm ci --silent --no-audit --no-fund; fi
  echo "$want" > "$stamp"
fi
