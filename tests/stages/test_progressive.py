"""The progressive route (NeRF -> NeuS -> DMTet -> polish -> texture) end to end, tiny, on the
CPU with the reference prior; and a killed NeRF stage resuming exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dreamer.representations.mesh_io import load_mesh
from dreamer.stages.pipeline import ROUTES, GenerateRequest, generate, resume
from tests.helpers import TINY_RUN

SMALL_FIELD = {"levels": 6, "features": 2, "log2_hashmap_size": 14, "base_resolution": 8, "per_level_scale": 1.5}
TINY_PROGRESSIVE = {
    **{k: v for k, v in TINY_RUN.items() if k.split(".")[0] in ("polish", "texture", "export")},
    "nerf.steps": 6,
    "nerf.resolution": 24,
    "nerf.checkpoint_every": 2,
    "nerf.field.encoding": SMALL_FIELD,
    "nerf.field.hidden": 16,
    "nerf.sampling.samples_per_ray": 32,
    "nerf.sampling.grid_update_every": 2,
    "nerf.isosurface.resolution": 48,
    # density 10 needs more than 6 steps; the blob's own isosurface at 3 is a ball of radius ~0.4
    "nerf.isosurface.level": 3.0,
    "neus.steps": 3,
    "neus.resolution": 24,
    "neus.sampling.samples_per_ray": 32,
    "neus.init.resolution": 48,
    "neus.init.steps": 30,
    "neus.isosurface_resolution": 48,
    "dmtet.steps": 3,
    "dmtet.resolution": 32,
    "dmtet.grid_resolution": 16,
}


def _request(box_path, out):
    return GenerateRequest(
        prompt="a box",
        out=out,
        preset="dreampolish-cpu",
        prior=f"reference:{box_path}",
        seed=1,
        overrides=TINY_PROGRESSIVE,
    )


def test_progressive_route_writes_every_stage_and_output(box_path, tmp_path):
    events = []
    out = generate(_request(box_path, tmp_path / "run"), events.append)
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "succeeded"
    assert list(run["stages"]) == list(ROUTES["progressive"])
    assert {e.stage for e in events} >= {"nerf", "neus", "dmtet", "polish", "texture", "export"}
    for stage in ("nerf", "neus", "dmtet"):
        with np.load(out / "checkpoints" / f"{stage}_mesh.npz") as surface:
            assert len(surface["faces"]) > 0, stage
        assert not (out / "checkpoints" / f"{stage}_last.pt").exists(), "intermediate checkpoints are cleaned up"
    assert run["stages"]["neus"]["init"]["fit_loss_end"] < run["stages"]["neus"]["init"]["fit_loss_start"]
    for name in ("model.glb", "model.obj", "preview.png"):
        assert (out / name).is_file(), name
    assert not (out / "gaussians.ply").exists()  # no Gaussians on this route
    mesh = load_mesh(out / "model.glb")
    assert mesh.has_texture and len(mesh.faces) > 0
    lo, hi = mesh.bounds()
    assert (lo > -1.0).all() and (hi < 1.0).all()


@pytest.mark.parametrize("stage", ["nerf", "neus"])
def test_a_killed_field_stage_resumes_and_matches_an_uninterrupted_run(box_path, tmp_path, stage):
    overrides = {**TINY_PROGRESSIVE, "neus.steps": 6, "neus.checkpoint_every": 2, "dmtet.steps": 0, "polish.steps": 0}
    straight = generate(_with(_request(box_path, tmp_path / "straight"), overrides))

    def kill_at_step_5(event):
        if event.stage == stage and event.step == 5:
            raise KeyboardInterrupt

    killed = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        generate(_with(_request(box_path, killed), overrides), kill_at_step_5)
    assert (killed / "checkpoints" / f"{stage}_last.pt").is_file()
    steps = []
    resume(killed, lambda e: steps.append(e.step) if e.stage == stage else None)
    assert steps[0] == 5, "resumed after the step-4 checkpoint"
    a = torch.load(straight / "checkpoints" / f"{stage}.pt")
    b = torch.load(killed / "checkpoints" / f"{stage}.pt")
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)


def _with(request: GenerateRequest, overrides: dict) -> GenerateRequest:
    request.overrides = overrides
    return request
