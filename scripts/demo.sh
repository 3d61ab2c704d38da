#!/usr/bin/env bash
# Offline demo on the CPU: "a red torus" from the built-in shapes prior (the cpu preset's default
# prior, shipped in assets/) -> out/demo/. No weights to download, no GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
export HF_HUB_OFFLINE=1
rm -rf out/demo
dreamer generate "a red torus" --preset cpu --seed 0 --out out/demo
echo "open out/demo/model.glb (preview: out/demo/preview.png)"
