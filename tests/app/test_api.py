"""The HTTP API without workers: status codes, messages, ownership, positions, bad input."""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient

from app.server import create_app
from dreamer.jobs.store import QUEUED


@pytest.fixture
def client(studio):
    with TestClient(create_app(studio, start_workers=False, with_ui=False)) as c:
        yield c


def _as(user: str) -> dict:
    return {"X-Dreamer-User": user}


def test_twenty_jobs_by_four_users_all_accounted_for(client, studio):
    ids = {}
    for i in range(20):
        user = f"user{i % 4}"
        r = client.post("/api/v1/jobs", json={"prompt": f"thing {i}", "seed": i}, headers=_as(user))
        assert r.status_code == 201, r.text
        assert r.json()["position"] == i + 1 and r.json()["state"] == QUEUED
        ids[r.json()["id"]] = user
    for k in range(4):
        user = f"user{k}"
        listed = client.get("/api/v1/jobs", headers=_as(user)).json()
        mine = [j for j in listed["jobs"]]
        assert {j["id"] for j in mine} == {i for i, u in ids.items() if u == user}
        assert sorted(j["position"] for j in mine) == [k + 1, k + 5, k + 9, k + 13, k + 17]
        assert listed["counts"]["queued"] == 5
    other = next(i for i, u in ids.items() if u == "user1")
    assert client.get(f"/api/v1/jobs/{other}", headers=_as("user0")).status_code == 404
    # one cancelled job moves everyone behind it up
    first = next(iter(ids))
    assert client.post(f"/api/v1/jobs/{first}/cancel", headers=_as("user0")).json()["state"] == "cancelled"
    positions = sorted(
        j["position"]
        for u in range(4)
        for j in client.get("/api/v1/jobs", headers=_as(f"user{u}")).json()["jobs"]
        if j["position"]
    )
    assert positions == list(range(1, 20))


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"prompt": "x" * 100_000}, "prompt"),
        ({"prompt": "a duck", "seed": -1}, "seed"),
        ({"prompt": "a duck", "steps": -5}, "steps"),
        ({"prompt": "a duck", "preset": "ultra"}, "unknown preset"),
        ({"prompt": "   "}, "empty"),
        ({"prompt": "a duck", "prior": "reference:/etc/passwd"}, "folders the operator allows"),
        ({"prompt": "a duck", "prior": "../../secret-model"}, "not allowed"),
        ({"prompt": "a duck", "overrides": {"init.path": "/etc/passwd"}}, "cannot be changed"),
        ({"prompt": "a duck", "overrides": {"coarse.steps": 10**7}}, "limit"),
        ({"prompt": "a duck", "overrides": {"coarse.nonsense": 1}}, "nonsense"),
        ({"prompt": "a duck", "unknown": 1}, "unknown"),
    ],
)
def test_bad_input_is_a_4xx_with_a_message_and_changes_nothing(client, body, fragment):
    r = client.post("/api/v1/jobs", json=body, headers=_as("mallory"))
    assert 400 <= r.status_code < 500, r.text
    assert fragment.lower() in r.json()["detail"].lower()
    assert client.get("/api/v1/jobs", headers=_as("mallory")).json()["jobs"] == []


def test_downloads_refuse_traversal_and_other_users(client, studio):
    job = client.post("/api/v1/jobs", json={"prompt": "a duck"}, headers=_as("alice")).json()
    (studio.root / "secret.txt").write_text("secret")
    for name in ("..%2F..%2Fsecret.txt", "%2E%2E", "%2e%2e%2fjobs.db", "run.json%00", "jobs.db", ".lock"):
        r = client.get(f"/api/v1/jobs/{job['id']}/files/{name}", headers=_as("alice"))
        assert 400 <= r.status_code < 500 and "secret" not in r.text and r.json()["detail"]
    r = client.get(f"/api/v1/jobs/{job['id']}/files/jobs.db", headers=_as("alice"))
    assert r.status_code == 400 and "unknown file" in r.json()["detail"]
    r = client.get(f"/api/v1/jobs/{job['id']}/files/model.glb", headers=_as("alice"))
    assert r.status_code == 404 and "queued" in r.json()["detail"]
    assert client.get(f"/api/v1/jobs/{job['id']}/files/model.glb", headers=_as("bob")).status_code == 404
    assert client.get("/api/v1/jobs/not-a-hex-id", headers=_as("alice")).status_code == 422
    assert client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=_as("bob")).status_code == 404
    assert client.get(f"/api/v1/jobs/{job['id']}", headers=_as("alice")).json()["state"] == "queued"


def test_limits_and_conflicts(client, studio):
    for i in range(5):
        assert client.post("/api/v1/jobs", json={"prompt": f"p{i}"}, headers=_as("a")).status_code == 201
    r = client.post("/api/v1/jobs", json={"prompt": "one more"}, headers=_as("a"))
    assert r.status_code == 429 and "limit" in r.json()["detail"]
    job = client.get("/api/v1/jobs", headers=_as("a")).json()["jobs"][0]
    client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=_as("a"))
    r = client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=_as("a"))
    assert r.status_code == 409 and "cancelled" in r.json()["detail"]
    assert client.post("/api/v1/jobs", json={"prompt": "x"}, headers=_as("bad user!")).status_code == 400


def test_auth_token_and_password(tmp_path, studio):
    studio.tokens = {"tok-alice": "alice"}
    studio.passwords = {"bob": "pw"}
    with TestClient(create_app(studio, start_workers=False, with_ui=False)) as c:
        assert c.get("/api/v1/jobs").status_code == 401
        assert c.get("/api/v1/jobs", headers={"Authorization": "Bearer nope"}).status_code == 401
        r = c.post("/api/v1/jobs", json={"prompt": "duck"}, headers={"Authorization": "Bearer tok-alice"})
        assert r.status_code == 201 and r.json()["owner"] == "alice"
        basic = "Basic " + base64.b64encode(b"bob:pw").decode()
        assert c.get("/api/v1/jobs", headers={"Authorization": basic}).json()["jobs"] == []
        wrong = "Basic " + base64.b64encode(b"bob:no").decode()
        assert c.get("/api/v1/jobs", headers={"Authorization": wrong}).status_code == 401
        # the header is ignored once auth is on
        assert c.get("/api/v1/jobs", headers={"X-Dreamer-User": "alice"}).status_code == 401


def test_openapi_and_presets(client):
    schema = client.get("/openapi.json").json()
    assert "/api/v1/jobs" in schema["paths"] and "/api/v1/jobs/{job_id}/files/{name}" in schema["paths"]
    names = [p["name"] for p in client.get("/api/v1/presets").json()]
    assert "cpu" in names
    assert client.get("/api/v1/health").status_code == 200
