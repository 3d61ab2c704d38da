"""The studio through ``gradio_client``: the UI's named endpoints (/submit, /status, /cancel, /list)
against a real server and a real tiny job, with the user carried in the X-Dreamer-User header."""

from __future__ import annotations

import io
import time

import httpx
import pytest
import trimesh
from gradio_client import Client
from gradio_client.exceptions import AppError

from tests.app.serverproc import Server

pytestmark = pytest.mark.slow
ENDPOINTS = {"/submit", "/status", "/cancel", "/list"}


@pytest.fixture
def server(tmp_path):
    srv = Server(tmp_path / "studio", tmp_path / "server.log").start()
    yield srv
    srv.stop()


@pytest.fixture
def connect(server):
    """``connect(user)``: a gradio_client on the mounted UI, speaking as ``user``."""
    clients = []

    def make(user: str):
        client = Client(
            f"{server.url}/ui/",
            verbose=False,
            headers={"X-Dreamer-User": user},
            download_files=False,
            analytics_enabled=False,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def _call(client, api_name: str, **kwargs):
    return client.predict(api_name=api_name, **kwargs)


def _fails(client, api_name: str, fragment: str, **kwargs) -> str:
    with pytest.raises(AppError) as info:
        _call(client, api_name, **kwargs)
    message = str(info.value)
    assert fragment.lower() in message.lower(), message
    return message


def test_gradio_client_submits_follows_lists_cancels_and_downloads(server, connect):
    alice, bob = connect("alice"), connect("bob")

    api = alice.view_api(print_info=False, return_format="dict")
    assert set(api["named_endpoints"]) == ENDPOINTS, api["named_endpoints"].keys()  # the UI's own are private
    params = [p["parameter_name"] for p in api["named_endpoints"]["/submit"]["parameters"]]
    assert params[:4] == ["prompt", "negative", "preset", "seed"], params
    assert "request" not in params

    # bad input: a readable error, nothing queued
    _fails(alice, "/submit", "empty", prompt="   ")
    assert _call(alice, "/list") == []

    job = _call(alice, "/submit", prompt="a small yellow duck", seed=3)
    assert job["owner"] == "alice" and job["state"] == "queued", job
    assert job["position"] == 1 and job["progress"] == 0.0 and job["files"] == {}, job
    assert job["prompt"] == "a small yellow duck" and job["seed"] == 3, job

    # a second job waits behind the first (one worker); cancelling it while queued ends it at once
    second = _call(alice, "/submit", prompt="a second duck")
    assert second["state"] == "queued" and second["position"] in (1, 2), second
    cancelled = _call(alice, "/cancel", job_id=second["id"])
    assert cancelled["id"] == second["id"] and cancelled["state"] == "cancelled", cancelled
    assert cancelled["cancel_requested"] and cancelled["finished_at"] and cancelled["position"] is None

    # another user neither sees nor touches alice's jobs
    assert _call(bob, "/list") == []
    _fails(bob, "/status", "among your jobs", job_id=job["id"])
    _fails(bob, "/cancel", "among your jobs", job_id=job["id"])

    seen = []
    deadline = time.time() + 240
    while time.time() < deadline:
        status = _call(alice, "/status", job_id=job["id"])
        seen.append(status)
        if status["state"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.5)
    assert status["state"] == "succeeded", (status, server.log_path.read_text()[-3000:])
    for snapshot in seen:
        assert 0.0 <= snapshot["progress"] <= 1.0, snapshot
        assert snapshot["id"] == job["id"] and snapshot["owner"] == "alice"
        if snapshot["state"] != "queued":
            assert snapshot["position"] is None, snapshot
    running = [s for s in seen if s["state"] == "running"]
    assert running and any(s["stage"] for s in running), [s["state"] for s in seen]
    progress = [s["progress"] for s in seen]
    assert progress == sorted(progress), progress
    assert status["progress"] == 1.0 and status["stage"] == "done" and status["eta_s"] is None, status
    assert status["started_at"] and status["finished_at"] and status["error"] is None, status

    # the GLB (and the preview) download over the HTTP API as the same user, and only as them
    assert "model.glb" in status["files"], status["files"]
    glb_url = server.url + status["files"]["model.glb"]
    reply = httpx.get(glb_url, headers={"X-Dreamer-User": "alice"}, timeout=30)
    assert reply.status_code == 200, reply.text
    assert reply.content[:4] == b"glTF"
    mesh = trimesh.load(io.BytesIO(reply.content), file_type="glb", force="mesh")
    assert len(mesh.faces) > 100
    assert httpx.get(glb_url, headers={"X-Dreamer-User": "bob"}, timeout=30).status_code == 404
    assert status["preview_url"]
    preview = httpx.get(server.url + status["preview_url"], headers={"X-Dreamer-User": "alice"}, timeout=30)
    assert preview.status_code == 200 and preview.content[:8] == b"\x89PNG\r\n\x1a\n"

    # /list: alice's two jobs, newest first; still nothing for bob
    listed = _call(alice, "/list")
    assert [j["id"] for j in listed] == [second["id"], job["id"]], listed
    assert [j["state"] for j in listed] == ["cancelled", "succeeded"]
    assert all(j["owner"] == "alice" for j in listed)
    assert _call(bob, "/list") == []

    # cancelling a finished job says why not and changes nothing
    _fails(alice, "/cancel", "nothing to cancel", job_id=job["id"])
    _fails(alice, "/cancel", "nothing to cancel", job_id=second["id"])
    assert _call(alice, "/status", job_id=job["id"])["state"] == "succeeded"
    _fails(alice, "/cancel", "among your jobs", job_id="0" * 32)

    # an identity the studio refuses is an error, not someone else's view
    _fails(connect("not a user!"), "/list", "user names")
