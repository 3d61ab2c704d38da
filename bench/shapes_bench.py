"""The shapes prior, judged: 2D samples, prompt -> 3D mesh, and SDS vs VSD diversity.

Sections (each writes its own JSON in bench/results/, merged with what is there):

* ``2d``: ``--per-prompt`` DDIM samples of each of the 48 prompts, read by the independent judge
  (dreamer/eval/shapes.py); shape and colour accuracy overall and per prompt, plus a sample sheet.
* ``3d``: the real command, ``dreamer generate PROMPT --prior shapes --preset cpu``, in a fresh
  process per prompt; the exported mesh's nearest canonical primitive (Chamfer-L1 in scene space,
  no re-alignment), its Chamfer to the prompted primitive and its mean surface colour.
* ``diversity``: one prompt distilled into a 32 px image from the same start with SDS and with
  VSD, once per seed; the spread of the results (mean pairwise RMS distance) and the judge's reading.
* ``camera``: whether a camera-conditioned model uses the view (its samples from two azimuths,
  against two start noises).

Usage: python -m bench.shapes_bench 2d | 3d [--prompts "a red cube,a blue torus"] | diversity | camera
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from dreamer.eval.shapes import JUDGE_DIR, colour_distance, load_judge, mean_surface_colour, nearest_primitive
from dreamer.export.files import write_json
from dreamer.export.images import save_image
from dreamer.priors.shapes.sample import SAMPLE_GUIDANCE, sample_images
from dreamer.priors.shapes.world import all_prompts, parse_prompt, prompt_text

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
#: the issue's bar
TARGETS_2D = {"shape_accuracy": 0.90, "colour_accuracy": 0.95}
TARGETS_3D = {"chamfer_l1": 0.05, "colour_distance": 0.15, "wall_s": 600.0, "share_correct": 0.90}
#: twelve prompts, every shape twice and every colour at least once
BENCH_PROMPTS = (
    "a red cube", "a white sphere", "a blue cylinder", "a yellow cone", "a purple torus", "a green pyramid",
    "a black cube", "a orange sphere", "a green cylinder", "a white cone", "a red torus", "a blue pyramid",
)  # fmt: skip


def _load_prior():
    from dreamer.priors.diffusers_prior import load_diffusers_prior

    return load_diffusers_prior("shapes", torch.device("cpu"))


def _model_facts() -> dict:
    """Which shipped model a result is of (results of different models must not be mixed up)."""
    from dreamer.priors.camera_condition import CAMERA_CONDITION_KEY
    from dreamer.priors.weights import SHAPES_PRIOR_DIR

    index = json.loads((SHAPES_PRIOR_DIR / "model_index.json").read_text())
    log = json.loads((SHAPES_PRIOR_DIR / "train_log.json").read_text())
    return {
        "camera_condition": index.get(CAMERA_CONDITION_KEY),
        "unet_parameters": log["unet_parameters"],
        "train_wall_seconds": log["wall_seconds"],
    }


def _merge(path: Path, key: str, rows: dict) -> dict:
    data = json.loads(path.read_text()) if path.exists() else {}
    data.setdefault(key, {}).update(rows)
    return data


def bench_2d(per_prompt: int, seed: int, guidance: float, steps: int) -> dict:
    prior, judge = _load_prior(), load_judge()
    gen = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    rows, sheet = {}, []
    prompts = all_prompts()
    for group in range(0, len(prompts), 8):
        chunk = prompts[group : group + 8]
        images = sample_images(prior, [prompt_text(c, s) for c, s in chunk], per_prompt, gen, steps, guidance)
        shapes, colours = judge.classify(images)
        sheet.append(images.reshape(len(chunk), per_prompt, *images.shape[1:]))
        for k, (colour, shape) in enumerate(chunk):
            got = slice(k * per_prompt, (k + 1) * per_prompt)
            rows[prompt_text(colour, shape)] = {
                "shapes": shapes[got],
                "colours": colours[got],
                "shape_correct": sum(s == shape for s in shapes[got]),
                "colour_correct": sum(c == colour for c in colours[got]),
            }
    n = len(rows) * per_prompt
    summary = {
        "samples": n,
        "per_prompt": per_prompt,
        "ddim_steps": steps,
        "guidance": guidance,
        "seed": seed,
        "wall_s": round(time.perf_counter() - started, 1),
        "shape_accuracy": round(sum(r["shape_correct"] for r in rows.values()) / n, 4),
        "colour_accuracy": round(sum(r["colour_correct"] for r in rows.values()) / n, 4),
        "judge": json.loads((JUDGE_DIR / "judge.json").read_text()),
        "model": _model_facts(),
    }
    summary["passes"] = all(summary[k] >= v for k, v in TARGETS_2D.items())
    grid = torch.cat(sheet)  # [48, per_prompt, S, S, 3]: prompts down, samples across
    p, q, s = grid.shape[:3]
    strips = grid.permute(0, 2, 1, 3, 4).reshape(p * s, q * s, 3)
    save_image(strips[: p * s // 2], RESULTS / "shapes_samples_a.png")
    save_image(strips[p * s // 2 :], RESULTS / "shapes_samples_b.png")
    return {"summary": summary, "prompts": rows}


def run_prompt(prompt: str, out: Path, seed: int, overrides: list[str]) -> dict:
    parsed = parse_prompt(prompt)
    if parsed is None:
        raise SystemExit(f"'{prompt}' is not one of the shapes world's prompts ('a {{colour}} {{shape}}')")
    colour, shape = parsed
    shutil.rmtree(out, ignore_errors=True)  # the bench's own scratch run of an earlier bench
    cmd = [sys.executable, "-m", "dreamer.cli", "generate", prompt, "--prior", "shapes", "--preset", "cpu"]
    cmd += ["--seed", str(seed), "--out", str(out), "--quiet"]
    for item in overrides:
        cmd += ["--set", item]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, HF_HUB_OFFLINE="1"), capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1:], "wall_s": round(wall, 1)}
    from dreamer.representations.mesh_io import load_mesh

    mesh = load_mesh(out / "model.glb")
    nearest, distances = nearest_primitive(mesh)
    rgb = mean_surface_colour(mesh)
    row = {
        "nearest": nearest,
        "chamfer_l1": round(distances[shape], 4),
        "chamfer_to_each": {k: round(v, 4) for k, v in distances.items()},
        "mean_colour": [round(float(c), 3) for c in rgb],
        "colour_distance": round(colour_distance(rgb, colour), 4),
        "wall_s": round(wall, 1),
        "stages_s": {k: v["wall_s"] for k, v in json.loads((out / "run.json").read_text())["stages"].items()},
        "model": _model_facts(),
    }
    row["correct"] = bool(
        nearest == shape
        and row["chamfer_l1"] <= TARGETS_3D["chamfer_l1"]
        and row["colour_distance"] <= TARGETS_3D["colour_distance"]
        and wall <= TARGETS_3D["wall_s"]
    )
    return row


def bench_diversity(prompt: str, seeds: int, steps: int) -> dict:
    from dreamer.cameras import orbit_cameras
    from dreamer.objectives.sds import SDSConfig
    from dreamer.objectives.select import build_objective
    from dreamer.objectives.vsd import VSDConfig
    from dreamer.priors.base import Views

    prior, judge = _load_prior(), load_judge()
    prompt_emb = prior.encode_prompt(prompt)
    colour, shape = parse_prompt(prompt)
    views = Views(orbit_cameras(20.0, 0.0), torch.full((1, 3), 0.5))
    result = {"prompt": prompt, "steps": steps, "seeds": seeds, "model": _model_facts()}
    sheet = []
    for name, cfg in (("sds", SDSConfig(guidance_scale=7.5)), ("vsd", VSDConfig(guidance_scale=7.5))):
        finals = []
        started = time.perf_counter()
        for seed in range(seeds):
            torch.manual_seed(seed)
            objective = build_objective(prior, cfg)
            gen = torch.Generator().manual_seed(seed)
            logits = torch.zeros(1, prior.sample_size, prior.sample_size, 3, requires_grad=True)
            optimizer = torch.optim.Adam([logits], lr=0.05)
            for step in range(steps):
                loss = objective(torch.sigmoid(logits), views, prompt_emb, step, steps, gen).loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            finals.append(torch.sigmoid(logits).detach()[0])
        images = torch.stack(finals)
        pairs = [float((a - b).pow(2).mean().sqrt()) for a, b in itertools.combinations(images, 2)]
        shapes, colours = judge.classify(images)
        result[name] = {
            "spread_rms": round(float(np.mean(pairs)), 4),
            "judge_shape_correct": sum(s == shape for s in shapes),
            "judge_colour_correct": sum(c == colour for c in colours),
            "wall_s": round(time.perf_counter() - started, 1),
        }
        sheet.append(images)
    grid = torch.stack(sheet)  # [2, seeds, S, S, 3]: SDS row, VSD row
    s = grid.shape[2]
    save_image(grid.permute(0, 2, 1, 3, 4).reshape(2 * s, seeds * s, 3), RESULTS / "shapes_diversity.png")
    result["vsd_over_sds_spread"] = round(result["vsd"]["spread_rms"] / max(result["sds"]["spread_rms"], 1e-8), 3)
    return result


def _estimate_change_by_view(prior, seeds: int) -> dict:
    """What score distillation reads: the model's clean-image estimate of a noised face-on render
    of the red cube (elevation 10, grey 0.5), told the face-on camera (azimuth 0) or the corner-on
    one (44: at 45 the prompt's view suffix would turn from front to side as well), against how much
    the two renders differ. A model that knows what the camera sees moves its estimate by about
    the renders' difference; one that ignores it, by nothing."""
    from dreamer.cameras import orbit_cameras
    from dreamer.priors.base import Views
    from dreamer.priors.shapes.dataset import render_canonical

    cams = orbit_cameras(torch.full((2,), 10.0), torch.tensor([0.0, 44.0]), 2.6, 42.0)
    views = [Views(cams[k], torch.full((1, 3), 0.5), shading="albedo") for k in range(2)]
    renders = torch.from_numpy(render_canonical("cube", "red", views, prior.sample_size)).float() / 255.0
    face = prior.encode(renders[:1]).expand(2, -1, -1, -1)
    prompt = prior.encode_prompt("a red cube")
    told = Views(cams, torch.full((2, 3), 0.5), shading="albedo")
    changes = {}
    for step in (900, 700, 500):
        t = torch.full((2,), step)
        alpha, sigma = (v.view(-1, 1, 1, 1) for v in prior.alpha_sigma(t))
        per_seed = []
        for seed in range(seeds):
            noise = torch.randn(face[:1].shape, generator=torch.Generator().manual_seed(seed)).expand_as(face)
            x_t = prior.add_noise(face, noise, t)
            eps = prior.predict_noise(x_t, t, prompt, told, branches=("cond",))[0]
            x0 = (x_t - sigma * eps) / alpha
            per_seed.append(float((x0[0] - x0[1]).abs().mean()) / 2)  # [-1, 1] -> [0, 1] units
        changes[str(step)] = round(float(np.mean(per_seed)), 5)
    return {
        "render_change_face_to_corner": round(float((renders[0] - renders[1]).abs().mean()), 5),
        "estimate_change_by_view": changes,
    }


def bench_camera(prompts: tuple[str, ...], per_prompt: int, steps: int) -> dict:
    """How much the view changes a camera-conditioned model's samples: the same start noise seen
    from azimuth 0 and 45 (a cube's face and its corner), against two start noises from one view.
    A ratio near 0 means the model ignores the camera. Also the view's effect on one denoising
    estimate (``_estimate_change_by_view``)."""
    from dreamer.cameras import orbit_cameras

    prior = _load_prior()
    if not prior.camera_conditioned:
        raise SystemExit("the shipped shapes prior is not camera-conditioned: nothing to measure")
    n = len(prompts) * per_prompt

    def samples(azimuth: float, seed: int) -> torch.Tensor:
        cams = orbit_cameras(torch.full((n,), 10.0), torch.full((n,), azimuth), 2.6, 42.0)
        return sample_images(prior, list(prompts), per_prompt, torch.Generator().manual_seed(seed), steps, cameras=cams)

    base = samples(0.0, 0)
    view_change = float((base - samples(45.0, 0)).abs().mean())
    seed_change = float((base - samples(0.0, 1)).abs().mean())
    return {
        **_estimate_change_by_view(prior, seeds=4),
        "prompts": list(prompts),
        "per_prompt": per_prompt,
        "ddim_steps": steps,
        "cameras": "elevation 10, radius 2.6, fovy 42; azimuth 0 against 45",
        "mean_abs_change_view": round(view_change, 5),
        "mean_abs_change_seed": round(seed_change, 5),
        "view_over_seed": round(view_change / max(seed_change, 1e-8), 4),
        "model": _model_facts(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("section", choices=("2d", "3d", "diversity", "camera"))
    parser.add_argument("--per-prompt", type=int, default=4)
    parser.add_argument("--guidance", type=float, default=SAMPLE_GUIDANCE)
    parser.add_argument("--ddim-steps", type=int, default=50)
    parser.add_argument("--prompts", help="comma-separated prompts for 3d (default: the twelve bench prompts)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], help="preset override, as for dreamer generate")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "work" / "shapes")
    parser.add_argument("--steps", type=int, default=300, help="diversity: optimisation steps per run")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.section == "2d":
        write_json(RESULTS / "shapes_2d.json", bench_2d(args.per_prompt, args.seed, args.guidance, args.ddim_steps))
        print(json.dumps(json.loads((RESULTS / "shapes_2d.json").read_text())["summary"], indent=2))
    elif args.section == "camera":
        write_json(RESULTS / "shapes_camera.json", bench_camera(("a red cube", "a green pyramid"), 4, 25))
        print((RESULTS / "shapes_camera.json").read_text())
    elif args.section == "diversity":
        write_json(RESULTS / "shapes_diversity.json", bench_diversity("a red cube", 4, args.steps))
        print((RESULTS / "shapes_diversity.json").read_text())
    else:
        path = RESULTS / "shapes_3d.json"
        prompts = args.prompts.split(",") if args.prompts else list(BENCH_PROMPTS)
        for prompt in prompts:
            slug = prompt.strip().replace(" ", "_")
            row = run_prompt(prompt.strip(), args.work / slug, args.seed, args.set)
            print(prompt, json.dumps(row))
            data = _merge(path, "prompts", {prompt.strip(): {**row, "seed": args.seed, "overrides": args.set}})
            rows = [r for r in data["prompts"].values() if "error" not in r]
            data["summary"] = {
                "prompts": len(data["prompts"]),
                "share_correct": round(sum(r["correct"] for r in rows) / max(1, len(data["prompts"])), 4),
                "share_nearest_right": round(
                    sum(r["nearest"] == parse_prompt(p)[1] for p, r in data["prompts"].items() if "error" not in r)
                    / max(1, len(data["prompts"])),
                    4,
                ),
                "max_wall_s": max((r["wall_s"] for r in data["prompts"].values()), default=0.0),
                "targets": TARGETS_3D,
            }
            write_json(path, data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
