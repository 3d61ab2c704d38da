"""``dreamer edit``: DDS on a finished run's Gaussians, into a new run folder (tiny random SD, CPU).

One tiny finished run (reference prior, as in test_pipeline.py) and one straight edit of it are
shared by the module; the error paths use fake run folders and run no pipeline at all.
"""

import dataclasses
import hashlib
import json

import pytest
import torch

from dreamer.errors import DreamerError
from dreamer.export.mesh_export import save_glb
from dreamer.presets import RunConfig
from dreamer.representations.gaussians import PARAM_NAMES, gaussians_from_state
from dreamer.stages.edit import EditRequest, edit, prepare_edit, run_edit
from dreamer.stages.pipeline import GenerateRequest, _load_gaussians, generate, resume, stages_of
from tests.helpers import TINY_RUN, coloured_box, fake_finished_run
from tests.tiny_models import make_tiny_sd

#: the original run: the pipeline's tiny settings (no polish: it is not what is tested here)
ORIGINAL = {**TINY_RUN, **({"polish.steps": 0} if "polish" in RunConfig.model_fields else {})}
#: the edit: a few steps, checkpoints every 2 so that an interruption has one to resume from
EDIT = {"edit.steps": 6, "edit.checkpoint_every": 2}


@pytest.fixture(scope="module", autouse=True)
def offline_one_thread(tmp_path_factory):
    """Offline, prompt embeddings in a temporary cache, and one torch thread (tiny networks
    lose more to thread hand-offs than they gain)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("DREAMER_CACHE", str(tmp_path_factory.mktemp("dreamer_cache")))
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def box_prior(tmp_path_factory):
    path = tmp_path_factory.mktemp("assets") / "box.glb"
    save_glb(coloured_box(), path)
    return f"reference:{path}"


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    return str(make_tiny_sd(tmp_path_factory.mktemp("tiny_sd") / "sd"))


def _hashes(folder):
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory, box_prior):
    """A tiny finished run and the hashes of its files right after it finished."""
    out = tmp_path_factory.mktemp("runs") / "box"
    generate(GenerateRequest(prompt="a box", out=out, preset="cpu", prior=box_prior, seed=3, overrides=ORIGINAL))
    return out, _hashes(out)


def _request(finished, tiny_sd, **changes):
    fields = dict(source=finished[0], prompt="a red box", prior=tiny_sd, overrides=EDIT)
    fields.update(changes)
    return EditRequest(**fields)


@pytest.fixture(scope="module")
def edited(finished, tiny_sd):
    """The straight (uninterrupted) edit of ``finished`` into the default ``OUT-edit`` and its events."""
    events = []
    out = edit(_request(finished, tiny_sd), events.append)
    return out, events


def test_an_edit_writes_a_complete_new_run_and_leaves_the_original_untouched(finished, edited):
    source, hashes = finished
    out, events = edited
    assert out == source.parent / "box-edit"
    for name in ("model.glb", "model.obj", "model.mtl", "model_albedo.png", "gaussians.ply", "preview.png"):
        assert (out / name).is_file(), name
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "succeeded" and run["prompt"] == "a red box" and run["source_prompt"] == "a box"
    assert run["edited_from"]["run"] == str(source.resolve()) and run["edited_from"]["prompt"] == "a box"
    assert run["edited_from"]["coarse_sha256"] == hashes["checkpoints/coarse.pt"]
    assert run["seed"] == 3 and run["prior"]["class"] == "DiffusersPrior"
    assert run["settings"]["edit"]["steps"] == 6 and run["settings"]["edit"]["objective"]["source_prompt"] == "a box"
    assert list(run["stages"]) == list(stages_of(run)) and "edit" in run["stages"] and "coarse" not in run["stages"]
    assert [e.step for e in events if e.stage == "edit"] == list(range(1, 7))
    assert not (out / "checkpoints" / "edit_last.pt").exists() and not list(out.rglob("*.tmp*"))
    before = _load_gaussians(out / "checkpoints" / "source.pt")
    after = _load_gaussians(out / "checkpoints" / "coarse.pt")
    assert len(before) == len(after) and not torch.equal(before.color_logits, after.color_logits)
    assert _hashes(source) == hashes, "the edited run's folder is unchanged"


def test_identical_prompts_are_a_zero_update_and_different_prompts_move_the_gaussians(finished, tiny_sd, tmp_path):
    ctx, _ = prepare_edit(_request(finished, tiny_sd, out=tmp_path / "edit", overrides={"edit.steps": 3}))
    ctx.checkpoints.mkdir(parents=True)
    _ = ctx.prior  # loaded once, shared by the copies of the context below
    source = _load_gaussians(finished[0] / "checkpoints" / "coarse.pt")
    kept = {k: v.clone() for k, v in source.state_dict().items()}

    same = run_edit(dataclasses.replace(ctx, prompt="a box", stage_info={}, _prompt=None), source)
    for name in PARAM_NAMES:
        assert torch.equal(getattr(same, name), kept[name]), f"{name} moved under identical prompts"

    info = {}
    moved = run_edit(dataclasses.replace(ctx, stage_info=info), source)
    assert info["edit"]["last_grad_norm"] > 0
    assert not torch.equal(moved.color_logits, kept["color_logits"]) and not torch.equal(moved.means, kept["means"])
    for name in PARAM_NAMES:  # the frozen source the DDS source branch renders is never touched
        assert torch.equal(getattr(source, name), kept[name])


def test_an_interrupted_edit_resumes_from_its_checkpoint_and_matches_a_straight_one(
    finished, edited, tiny_sd, tmp_path
):
    def interrupt_at_step_5(event):
        if event.stage == "edit" and event.step == 5:
            raise KeyboardInterrupt

    killed = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        edit(_request(finished, tiny_sd, out=killed), interrupt_at_step_5)
    run = json.loads((killed / "run.json").read_text())
    assert run["status"] == "interrupted" and (killed / "checkpoints" / "edit_last.pt").is_file()
    assert not (killed / "model.glb").exists()

    steps = []
    resume(killed, lambda e: steps.append(e.step) if e.stage == "edit" else None)
    assert steps[0] == 5, "resumed after the step-4 checkpoint, not from the start"
    run = json.loads((killed / "run.json").read_text())
    assert run["status"] == "succeeded" and run["resumed"] == 1 and (killed / "model.glb").is_file()
    straight = gaussians_from_state(torch.load(edited[0] / "checkpoints" / "coarse.pt"))
    resumed = gaussians_from_state(torch.load(killed / "checkpoints" / "coarse.pt"))
    for name in PARAM_NAMES:
        torch.testing.assert_close(getattr(resumed, name), getattr(straight, name))


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "is not a run folder"),
        ("running", r"has not finished \(status: running\); finish it with dreamer generate --resume"),
        ("no_gaussians", "no checkpoints/coarse.pt"),
        ("taken", "already holds a run"),
        ("inside", "inside the run being edited"),
        ("empty_prompt", "prompt is empty"),
        ("same_prompt", "equals the source prompt"),
        ("typo", r"edit\.stpes: unknown field"),
        ("bad_value", r"edit\.steps"),
        ("negative_seed", "--seed"),
    ],
)
def test_bad_edits_are_one_line_errors_before_any_work(box_prior, tmp_path, case, message):
    run = fake_finished_run(tmp_path / "run", box_prior, status="running" if case == "running" else "succeeded")
    fields = dict(source=run, prompt="a red box", prior=box_prior, out=tmp_path / "edit")
    if case == "missing":
        fields["source"] = tmp_path / "nope"
    elif case == "no_gaussians":
        (run / "checkpoints" / "coarse.pt").unlink()
    elif case == "taken":
        (tmp_path / "edit").mkdir()
        (tmp_path / "edit" / "run.json").write_text("{}")
    elif case == "inside":
        fields["out"] = run / "edited"
    elif case == "empty_prompt":
        fields["prompt"] = "  "
    elif case == "same_prompt":
        fields["prompt"] = "a box"
    elif case == "typo":
        fields["overrides"] = {"edit.stpes": 3}
    elif case == "bad_value":
        fields["overrides"] = {"edit.steps": 0}
    elif case == "negative_seed":
        fields["seed"] = -1
    before = _hashes(run) if run.exists() else {}
    with pytest.raises(DreamerError, match=message) as err:
        edit(EditRequest(**fields))
    assert "\n" not in str(err.value)
    assert not (tmp_path / "edit" / "checkpoints").exists()
    assert (_hashes(run) if run.exists() else {}) == before
