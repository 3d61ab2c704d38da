#!/usr/bin/env bash
# Offline demo on the CPU: reconstruct the shipped duck through the reference prior -> out/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
export HF_HUB_OFFLINE=1
rm -rf out/demo
dreamer generate "a yellow rubber duck" --prior reference:assets/demo/duck.glb --preset cpu --seed 0 --out out/demo
echo "open out/demo/model.glb (preview: out/demo/preview.png)"
