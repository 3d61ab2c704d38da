"""Time and memory per step of every objective on the tiny random SD (CPU), written to
bench/results/objectives_step_cpu.json. The numbers only compare objectives with each other
(UNet passes, LoRA training): the tiny model says nothing about SD's absolute cost.
Run: python -m bench.objectives_step
"""

from __future__ import annotations

import json
import resource
import tempfile
import time
from pathlib import Path

import torch
from pydantic import TypeAdapter

from dreamer.cameras import orbit_cameras
from dreamer.objectives.select import OBJECTIVES, ObjectiveConfig, build_objective
from dreamer.priors.base import Views
from dreamer.priors.diffusers_prior import load_diffusers_prior
from tests.tiny_models import make_tiny_sd

OUT = Path(__file__).parent / "results" / "objectives_step_cpu.json"


def main(batch: int = 2, warmup: int = 1, steps: int = 5) -> dict:
    root = Path(tempfile.mkdtemp())
    prior = load_diffusers_prior(
        str(make_tiny_sd(root / "sd")), torch.device("cpu"), cache_dir=root / "cache", keep_text_encoder=True
    )
    prompt = prior.encode_prompt("a corgi", "blurry")
    views = Views(
        orbit_cameras([15.0] * batch, [60.0 * i for i in range(batch)]), torch.full((batch, 3), 0.5)
    )
    results = {"batch": batch, "render": "64x64", "threads": torch.get_num_threads(), "objectives": {}}
    for name in sorted(OBJECTIVES):
        objective = build_objective(prior, TypeAdapter(ObjectiveConfig).validate_python({"name": name}))
        if name == "dds":
            objective.set_source(lambda v, h, w: torch.full((len(v.cameras), h, w, 3), 0.3))
        images = torch.rand(batch, 64, 64, 3, requires_grad=True)
        gen = torch.Generator().manual_seed(0)
        for step in range(warmup):
            objective(images, views, prompt, step, 100, gen).loss.backward()
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        for step in range(steps):
            objective(images, views, prompt, warmup + step, 100, gen).loss.backward()
        ms = (time.perf_counter() - t0) / steps * 1000
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        results["objectives"][name] = {
            "ms_per_step": round(ms, 1),
            "max_rss_mib": round(rss / 1024, 1),
            "max_rss_growth_mib": round((rss - rss0) / 1024, 1),
        }
        print(f"{name:5s} {ms:8.1f} ms/step  max RSS {rss / 1024:.0f} MiB")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
