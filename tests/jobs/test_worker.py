"""Workers with the pipeline faked at its boundary: end states, progress, cancel, resume, prior cache."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from dreamer.errors import DreamerError
from dreamer.jobs.service import JobService
from dreamer.jobs.spec import JobRequest
from dreamer.jobs.store import CANCELLED, FAILED, SUCCEEDED
from dreamer.jobs.worker import PriorCache, purge_expired, run_job, worker_loop


def _event(stage, step, total, preview=None):
    return SimpleNamespace(
        stage=stage, step=step, total=total, elapsed_s=0.1, message="", preview=preview, eta_s=1.0
    )


def fake_pipeline(spec: dict, out: Path, on_progress, device, resume: bool) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "run.json").write_text(f'{{"status": "running", "resumed": {int(resume)}}}')
    if "fail" in spec["prompt"]:
        raise DreamerError("the prior could not be loaded")
    if "crash" in spec["prompt"]:
        raise RuntimeError("boom\nsecond line")
    (out / "previews").mkdir(exist_ok=True)
    (out / "previews" / "coarse_latest.png").write_bytes(b"png")
    for step in range(1, 6):
        on_progress(_event("coarse", step, 5, out / "previews" / "coarse_latest.png"))
        if "slow" in spec["prompt"]:
            time.sleep(0.3)
    for name in ("model.glb", "model.obj", "model.mtl", "model_albedo.png", "gaussians.ply", "preview.png"):
        (out / name).write_bytes(b"x")
    on_progress(_event("export", 1, 1))
    return out


@pytest.fixture
def service(studio):
    return JobService(studio)


def _run_one(service, prompt):
    job = service.submit("alice", JobRequest(prompt=prompt, seed=1))
    claimed = service.store.claim_next("h:1")
    assert claimed.id == job.id
    state = run_job(service.store, service.config, claimed, "h:1", fake_pipeline)
    return state, service.get("alice", job.id)


def test_success_lists_artifacts_and_zips_the_obj(service):
    state, job = _run_one(service, "a duck")
    assert state == SUCCEEDED and job.state == SUCCEEDED and job.progress == 1.0
    assert job.artifacts == ["model.glb", "model_obj.zip", "gaussians.ply", "preview.png", "run.json"]
    assert job.preview == "previews/coarse_latest.png"
    import zipfile

    with zipfile.ZipFile(service.artifact("alice", job.id, "model_obj.zip")) as z:
        assert sorted(z.namelist()) == ["model.mtl", "model.obj", "model_albedo.png"]


def test_user_error_fails_with_its_message(service):
    state, job = _run_one(service, "please fail")
    assert state == FAILED and job.error == "the prior could not be loaded"


def test_bug_fails_with_a_one_line_reason(service):
    state, job = _run_one(service, "crash now")
    assert state == FAILED and job.error == "internal error: RuntimeError: boom"


def test_resumes_when_the_run_folder_has_a_run(service):
    job = service.submit("alice", JobRequest(prompt="a duck"))
    folder = service.config.runs_dir / job.id
    folder.mkdir(parents=True)
    (folder / "run.json").write_text("{}")
    seen = {}

    def spy(spec, out, cb, device, resume):
        seen["resume"] = resume
        return fake_pipeline(spec, out, cb, device, resume)

    run_job(service.store, service.config, service.store.claim_next("h:1"), "h:1", spy)
    assert seen["resume"] is True


def test_cancel_stops_a_running_job(service):
    job = service.submit("alice", JobRequest(prompt="slow duck"))
    stop = threading.Event()
    thread = threading.Thread(
        target=worker_loop, args=(service.config, stop, fake_pipeline, 0.05), daemon=True
    )
    thread.start()
    deadline = time.time() + 20
    while service.get("alice", job.id).state != "running" and time.time() < deadline:
        time.sleep(0.05)
    service.cancel("alice", job.id)
    while service.get("alice", job.id).state == "running" and time.time() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(10)
    assert service.get("alice", job.id).state == CANCELLED


def test_prior_cache_loads_once_per_prior(monkeypatch):
    import dreamer.priors.load as loader

    calls = []
    monkeypatch.setattr(loader, "load_prior", lambda spec, device: calls.append(spec) or object())
    cache = PriorCache().install()
    first = loader.load_prior("reference:a", "cpu")
    assert loader.load_prior("reference:a", "cpu") is first
    loader.load_prior("reference:b", "cpu")
    assert calls == ["reference:a", "reference:b"] and cache.loads == 2


def test_retention_removes_outputs_keeps_records(service):
    state, job = _run_one(service, "a duck")
    service.config.retention_days = 1e-9
    time.sleep(0.01)
    assert purge_expired(service.store, service.config) == 1
    assert not (service.config.runs_dir / job.id).exists()
    kept = service.get("alice", job.id)
    assert kept.purged and kept.state == SUCCEEDED and kept.artifacts == []


def test_progress_runs_from_zero_to_one_on_either_route():
    from dreamer.jobs.worker import _progress_fraction
    from dreamer.stages.pipeline import ROUTES

    for stages in ROUTES.values():
        points = [_progress_fraction(s, step, 2) for s in stages for step in (0, 1, 2)]
        assert points[0] == 0.0 and abs(points[-1] - 1.0) < 1e-9
        assert points == sorted(points), stages
