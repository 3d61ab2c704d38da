#!/usr/bin/env bash
# The test command: the README's and CI's. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
export HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False TQDM_DISABLE=1
ruff check .
python -m pytest -q -ra "$@"
