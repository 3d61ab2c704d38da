"""SIGKILL the server while a real job runs, restart it: the job resumes from its checkpoint."""

from __future__ import annotations

import json
import os
import sqlite3
import time

import httpx
import pytest
import trimesh

from dreamer.jobs.store import JobStore
from tests.app.serverproc import Server

pytestmark = pytest.mark.slow


def _wait(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_sigkill_during_a_job_then_restart_resumes_it(tmp_path):
    root = tmp_path / "studio"
    server = Server(root, tmp_path / "server.log").start()
    try:
        headers = {"X-Dreamer-User": "alice"}
        job = httpx.post(
            f"{server.url}/api/v1/jobs",
            json={"prompt": "a yellow duck", "seed": 3},
            headers=headers,
            timeout=30,
        ).json()
        status = lambda: httpx.get(
            f"{server.url}/api/v1/jobs/{job['id']}", headers=headers, timeout=30
        ).json()
        # kill once the coarse stage is checkpointed (extract or later), mid-job
        _wait(lambda: status()["stage"] in ("extract", "texture"), 300, "the job to pass the coarse stage")
        worker = JobStore(f"sqlite:///{root / 'jobs.db'}").get(job["id"]).worker
        server.kill()
    finally:
        server.stop()
    worker_pid = int(worker.rsplit(":", 1)[1])
    _wait(lambda: not _pid_alive(worker_pid), 30, "the orphaned worker to die with its server")

    con = sqlite3.connect(root / "jobs.db")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("SELECT state FROM jobs WHERE id=?", (job["id"],)).fetchone()[0] == "running"
    con.close()
    run = json.loads((root / "runs" / job["id"] / "run.json").read_text())
    assert "coarse" in run["stages"]

    server = Server(root, tmp_path / "server2.log").start()
    try:
        headers = {"X-Dreamer-User": "alice"}
        status = lambda: httpx.get(
            f"{server.url}/api/v1/jobs/{job['id']}", headers=headers, timeout=30
        ).json()
        final = _wait(
            lambda: (s := status())["state"] in ("succeeded", "failed", "cancelled") and s,
            300,
            "the resumed job to finish",
        )
        assert final["state"] == "succeeded", final
        assert final["attempts"] == 2
        run = json.loads((root / "runs" / job["id"] / "run.json").read_text())
        assert run["resumed"] == 1 and run["status"] == "succeeded"
        glb = httpx.get(f"{server.url}{final['files']['model.glb']}", headers=headers, timeout=30)
        assert glb.status_code == 200
        path = tmp_path / "model.glb"
        path.write_bytes(glb.content)
        mesh = trimesh.load(path, force="mesh")
        assert len(mesh.faces) > 100
        assert (
            httpx.get(f"{server.url}/api/v1/jobs", headers=headers, timeout=30).json()["counts"]["running"]
            == 0
        )
    finally:
        server.stop()
