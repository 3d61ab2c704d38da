"""The command line as a user meets it: one-line errors, exit codes, fast failure."""

import os
import subprocess
import sys
import time

import pytest

from dreamer.cli import main


def _run(*args, env_extra=None, timeout=60):
    env = dict(os.environ, HF_HUB_OFFLINE="1", **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", "dreamer.cli", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def test_missing_weights_fail_fast_with_one_line(tmp_path):
    started = time.perf_counter()
    proc = _run(
        "generate",
        "a corgi",
        "--prior",
        "sd21-base",
        "--out",
        str(tmp_path / "out"),
        env_extra={"HF_HOME": str(tmp_path / "hf"), "DREAMER_CACHE": str(tmp_path / "cache")},
    )
    elapsed = time.perf_counter() - started
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "stabilityai/stable-diffusion-2-1-base" in lines[0] and "--prior" in lines[0]
    assert elapsed < 5.0
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["generate", ""], "prompt is empty"),
        (["generate", "a cup", "--preset", "nope"], "unknown preset 'nope'"),
        (["generate", "a cup", "--steps", "-4"], "--steps: must be positive"),
        (["generate", "a cup", "--prior", "reference:/no/such.glb"], "does not exist"),
        (
            ["generate", "a cup", "--prior", "reference:assets/demo/duck.glb", "--set", "coarse.stpes=3"],
            "coarse.stpes: unknown field",
        ),
        (["generate"], "give a prompt"),
    ],
)
def test_user_mistakes_are_one_line_and_exit_2(capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        sys.exit(main(args))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_presets_lists_each_with_time_and_memory(capsys):
    assert main(["presets"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    names = [line.split()[0] for line in lines]
    assert "cpu" in names and "fast" in names
    assert all("[" in line and ";" in line for line in lines)


@pytest.fixture
def edit_runs(tmp_path):
    """Run folders as ``dreamer edit`` first reads them (no pipeline runs: these are the error paths)."""
    from dreamer.export.mesh_export import save_glb
    from tests.helpers import coloured_box, fake_finished_run

    box = tmp_path / "box.glb"
    save_glb(coloured_box(), box)
    prior = f"reference:{box}"
    return {
        "done": fake_finished_run(tmp_path / "done", prior),
        "running": fake_finished_run(tmp_path / "running", prior, status="running"),
        "missing": tmp_path / "nope",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["edit", "{missing}", "--prompt", "a red box"], "is not a run folder"),
        (["edit", "{running}", "--prompt", "a red box"], "has not finished (status: running)"),
        (["edit", "{done}", "--prompt", ""], "prompt is empty"),
        (["edit", "{done}", "--prompt", "a red box", "--source-prompt", " "], "prompt is empty"),
        (["edit", "{done}"], "the following arguments are required: --prompt"),
        (["edit", "{done}", "--prompt", "a box"], "equals the source prompt"),
        (["edit", "{done}", "--prompt", "a red box", "--steps", "0"], "--steps: must be positive"),
        (["edit", "{done}", "--prompt", "a red box", "--set", "edit.stpes=3"], "edit.stpes: unknown field"),
        (["edit", "{done}", "--prompt", "a red box", "--prior", "reference:/no/such.glb"], "does not exist"),
    ],
)
def test_edit_mistakes_are_one_line_and_exit_2(capsys, edit_runs, args, message):
    args = [a.format(**edit_runs) for a in args]
    with pytest.raises(SystemExit) as exit_info:
        sys.exit(main(args))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (edit_runs["done"].parent / "done-edit").exists()


def test_edit_maps_its_options_and_defaults_to_the_run_it_edits(monkeypatch, capsys, edit_runs):
    seen = []

    def fake_edit(request, on_progress=None):
        seen.append(request)
        return request.out

    monkeypatch.setattr("dreamer.stages.edit.edit", fake_edit)
    done = edit_runs["done"]
    args = ["edit", str(done), "--prompt", "a red box", "--steps", "7", "--set", "edit.objective.guidance_scale=20"]
    assert main(args) == 0
    (request,) = seen
    assert request.source == done and request.prompt == "a red box"
    assert request.source_prompt is None and request.seed is None and request.prior is None  # the run's own
    assert request.out == done.parent / "done-edit"
    assert request.overrides == {"edit.objective.guidance_scale": 20, "edit.steps": 7}
    assert capsys.readouterr().out.strip() == str(done.parent / "done-edit" / "model.glb")


def test_an_interrupted_edit_says_how_to_resume(monkeypatch, capsys, edit_runs, tmp_path):
    def interrupted(request, on_progress=None):
        raise KeyboardInterrupt

    monkeypatch.setattr("dreamer.stages.edit.edit", interrupted)
    code = main(["edit", str(edit_runs["done"]), "--prompt", "a red box", "--out", str(tmp_path / "e")])
    assert code == 130
    assert capsys.readouterr().err.strip() == f"interrupted: resume with  dreamer generate --resume {tmp_path / 'e'}"
