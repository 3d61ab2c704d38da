"""The pipeline end to end on the CPU with the reference prior, small enough for CI."""

import json
import os

import pytest
import torch

from dreamer.errors import DreamerError
from dreamer.representations.gaussians import gaussians_from_state
from dreamer.representations.mesh_io import load_mesh
from dreamer.stages.pipeline import GenerateRequest, generate, resume
from tests.helpers import TINY_RUN

TINY = {
    **TINY_RUN,
    "coarse.steps": 24,
    "coarse.resolution": 48,
    "coarse.batch_size": 2,
    "coarse.checkpoint_every": 8,
    "coarse.densify.start": 6,
    "coarse.densify.every": 6,
    "coarse.densify.stop": 20,
    "init.num_points": 400,
}


def _request(box_path, out, **changes):
    fields = dict(prompt="a box", out=out, preset="cpu", prior=f"reference:{box_path}", seed=3, overrides=TINY)
    fields.update(changes)
    return GenerateRequest(**fields)


def test_generate_writes_every_output(box_path, tmp_path):
    events = []
    out = generate(_request(box_path, tmp_path / "run"), events.append)
    for name in ("model.glb", "model.obj", "model.mtl", "model_albedo.png", "gaussians.ply", "preview.png"):
        assert (out / name).is_file(), name
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "succeeded" and run["seed"] == 3 and run["preset"] == "cpu"
    assert set(run["stages"]) == {"init", "coarse", "extract", "polish", "texture", "export"}
    assert all(s["wall_s"] >= 0 and s["peak_rss_mb"] > 0 for s in run["stages"].values())
    assert run["prior"]["class"] == "ReferencePrior" and run["prior"]["revision"]
    assert run["versions"]["torch"] and run["settings"]["coarse"]["steps"] == 24
    mesh = load_mesh(out / "model.glb")
    assert mesh.has_texture and len(mesh.faces) > 0
    lo, hi = mesh.bounds()
    assert (lo > -1.0).all() and (hi < 1.0).all()  # scene space, no re-centring
    assert {e.stage for e in events} == {"coarse", "extract", "polish", "texture", "export"}
    assert not list(out.rglob("*.tmp*")), "no temporary files left behind"


def test_an_interrupted_run_resumes_from_its_checkpoint_and_matches_an_uninterrupted_one(box_path, tmp_path):
    straight = generate(_request(box_path, tmp_path / "straight"))

    def interrupt_at_step_19(event):
        if event.stage == "coarse" and event.step == 19:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate(_request(box_path, tmp_path / "killed"), interrupt_at_step_19)
    killed = tmp_path / "killed"
    run = json.loads((killed / "run.json").read_text())
    assert run["status"] == "interrupted"
    assert (killed / "checkpoints" / "coarse_last.pt").is_file()
    assert not (killed / "model.glb").exists()

    steps = []
    resume(killed, lambda e: steps.append(e.step) if e.stage == "coarse" else None)
    assert steps[0] == 17, "resumed after the step-16 checkpoint, not from scratch"
    assert json.loads((killed / "run.json").read_text())["status"] == "succeeded"
    a = gaussians_from_state(torch.load(straight / "checkpoints" / "coarse.pt"))
    b = gaussians_from_state(torch.load(killed / "checkpoints" / "coarse.pt"))
    assert len(a) == len(b)
    torch.testing.assert_close(a.means, b.means)
    torch.testing.assert_close(a.color_logits, b.color_logits)


def test_refuses_to_overwrite_a_finished_run(box_path, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text("{}")
    with pytest.raises(DreamerError, match="already holds a run"):
        generate(_request(box_path, out))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"prompt": "   "}, "prompt is empty"),
        ({"prompt": "x" * 5000}, "characters long"),
        ({"preset": "no-such-preset"}, "unknown preset"),
        ({"prior": "reference:/does/not/exist.glb"}, "does not exist"),
        ({"overrides": {"coarse.steps": -3}}, "coarse.steps"),
        ({"seed": -1}, "--seed"),
    ],
)
def test_bad_requests_fail_before_any_work(box_path, tmp_path, changes, message):
    out = tmp_path / "run"
    with pytest.raises(DreamerError, match=message):
        generate(_request(box_path, out, **changes))
    assert not out.exists() or not any(out.iterdir())


def test_an_unreadable_mesh_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.glb"
    bad.write_bytes(b"not a mesh at all")
    with pytest.raises(DreamerError) as err:
        generate(GenerateRequest("a thing", tmp_path / "out", preset="cpu", prior=f"reference:{bad}", overrides=TINY))
    assert "\n" not in str(err.value)
    assert os.path.basename(bad) in str(err.value)


def test_the_coarse_time_budget_ends_the_stage_early_and_says_so(box_path, tmp_path):
    overrides = {**TINY, "coarse.max_seconds": 1e-3}
    out = generate(_request(box_path, tmp_path / "run", overrides=overrides))
    coarse = json.loads((out / "run.json").read_text())["stages"]["coarse"]
    assert coarse["stopped_at_step"] == 1 and "time budget" in coarse["reason"]
    assert (out / "model.glb").is_file()


def test_a_run_of_the_shapes_prior_records_the_presets_for_prior_settings(box_path, tmp_path):
    """The cpu preset tunes the shapes prior in for_prior.shapes; the reference prior keeps the rest."""
    from dreamer.stages.pipeline import prepare

    shapes, _ = prepare(_request(box_path, tmp_path / "shapes", prompt="a red cube", prior="shapes", overrides={}))
    reference, _ = prepare(_request(box_path, tmp_path / "reference", overrides={}))
    assert shapes.cfg.coarse.objective.guidance_scale == 2.0 and shapes.cfg.extract.silhouette_alpha == 0.5
    assert reference.cfg.coarse.objective.guidance_scale == 4.0 and reference.cfg.extract.silhouette_alpha == 0.1
