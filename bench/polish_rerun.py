"""Re-run only the polish stage of a finished bench run, with preset overrides, and score it.

Tuning the polish stage by rerunning whole bench runs costs minutes of coarse fitting per try;
this starts from the surface the run's polish started from (``checkpoints/extract.npz`` or
``dmtet_mesh.npz``) and scores that surface and the new polished one against the asset, the way
``bench.reference_bench`` does. The run folder is left as it was.

Usage: python -m bench.polish_rerun bench/work/runs/cpu-mug [--set polish.lr=0.01 ...] [--save OUT.npz]
Prints one JSON line: the start and polished scores, the polish wall time and run.json's stage info.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bench.assets import build_assets
from dreamer.eval.metrics import score_meshes
from dreamer.preset_files import apply_overrides, parse_override
from dreamer.presets import config_from_dict
from dreamer.representations.mesh import TexturedMesh
from dreamer.representations.mesh_io import load_mesh
from dreamer.stages.context import RunContext
from dreamer.stages.polish import run_polish

ROOT = Path(__file__).resolve().parents[1]
#: the surface the polish stage starts from, per route (as dreamer.stages.pipeline chooses it)
STARTS = {"progressive": "dmtet_mesh", "gaussians": "extract"}


def _load(path: Path) -> TexturedMesh:
    with np.load(path) as data:
        return TexturedMesh(vertices=data["vertices"], faces=data["faces"])


def _scores(mesh: TexturedMesh, reference: TexturedMesh) -> dict[str, float]:
    scores = score_meshes(mesh, reference, n=50_000, seed=0)
    return {k: round(float(v), 4) for k, v in scores.items() if k != "color_error"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a bench run folder (bench/work/runs/PRESET-ASSET)")
    parser.add_argument("--set", action="append", default=[], help="preset override, as for dreamer generate")
    parser.add_argument("--save", type=Path, help="write the polished mesh here (.npz)")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "work")
    args = parser.parse_args(argv)

    record = json.loads((args.run / "run.json").read_text())
    settings = apply_overrides(record["settings"], dict(parse_override(s) for s in args.set))
    cfg = config_from_dict(settings, "overrides")
    start = args.run / "checkpoints" / f"{STARTS[record['settings'].get('route', 'gaussians')]}.npz"
    asset = args.run.name.split("-")[-1]
    reference = load_mesh(build_assets(args.work / "assets", [asset])[0])
    ctx = RunContext(
        out=args.work / "polish_rerun",
        cfg=cfg,
        prompt=record["prompt"],
        negative=record["negative_prompt"],
        seed=record["seed"],
        device=torch.device("cpu"),
        prior_spec=record["prior"]["spec"],
    )
    mesh = _load(start)
    started = time.perf_counter()
    polished = run_polish(ctx, mesh)
    wall = time.perf_counter() - started
    if args.save:
        np.savez(args.save, vertices=polished.vertices, faces=polished.faces)
    row = {
        "run": args.run.name,
        "overrides": args.set,
        "start": {"surface": start.stem, **_scores(mesh, reference)},
        "polished": _scores(polished, reference),
        "polish_s": round(wall, 1),
        "stage_info": ctx.stage_info.get("polish", {}),
    }
    print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
