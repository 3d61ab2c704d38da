"""The command line as a user meets it: one-line errors, exit codes, fast failure."""

import os
import subprocess
import sys
import time

import pytest

from dreamer.cli import main


def _run(*args, env_extra=None, timeout=60):
    env = dict(os.environ, HF_HUB_OFFLINE="1", **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "dreamer.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_missing_weights_fail_fast_with_one_line(tmp_path):
    started = time.perf_counter()
    proc = _run("generate", "a corgi", "--out", str(tmp_path / "out"),
                env_extra={"HF_HOME": str(tmp_path / "hf"), "DREAMER_CACHE": str(tmp_path / "cache")})
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
        (["generate", "a cup", "--prior", "reference:assets/demo/duck.glb", "--set", "coarse.stpes=3"],
         "coarse.stpes: unknown field"),
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
