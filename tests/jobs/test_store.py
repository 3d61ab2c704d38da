"""The store as a queue: positions, bounds, ownership, cancel, recovery and retention."""

from __future__ import annotations

import os
import socket
import sqlite3
from datetime import timedelta

import pytest

from dreamer.jobs.store import (
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    JobRow,
    JobStore,
    NotFinished,
    QueueFull,
    UserLimit,
    utcnow,
)


@pytest.fixture
def store(tmp_path):
    s = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    yield s
    s.close()


def _spec(i: int = 0) -> dict:
    return {"prompt": f"thing {i}", "seed": i}


def test_positions_follow_submission_order_and_move_up(store):
    jobs = [store.submit(f"u{i % 2}", _spec(i), 100, 100) for i in range(6)]
    assert [j.position for j in jobs] == [1, 2, 3, 4, 5, 6]
    claimed = store.claim_next("host:1")
    assert claimed.id == jobs[0].id and claimed.state == RUNNING and claimed.attempts == 1
    assert store.get(jobs[1].id).position == 1
    assert [j.position for j in store.list(owner="u1")] == [5, 3, 1]


def test_each_user_sees_only_their_jobs(store):
    a = store.submit("alice", _spec(), 100, 100)
    store.submit("bob", _spec(), 100, 100)
    assert store.get(a.id, owner="bob") is None
    assert store.cancel(a.id, owner="bob") is None
    assert store.get(a.id).state == QUEUED
    assert {j.owner for j in store.list(owner="alice")} == {"alice"}


def test_bounds(store):
    for i in range(3):
        store.submit("alice", _spec(i), 5, 3)
    with pytest.raises(UserLimit):
        store.submit("alice", _spec(), 5, 3)
    store.submit("bob", _spec(), 5, 3)
    store.submit("bob", _spec(), 5, 3)
    with pytest.raises(QueueFull):
        store.submit("carol", _spec(), 5, 3)
    assert store.counts()[QUEUED] == 5


def test_cancel_queued_and_running(store):
    queued = store.submit("u", _spec(), 10, 10)
    running = store.submit("u", _spec(), 10, 10)
    assert store.cancel(queued.id).state == CANCELLED
    claimed = store.claim_next("h:1")
    assert claimed.id == running.id
    flagged = store.cancel(running.id)
    assert flagged.state == RUNNING and flagged.cancel_requested
    assert store.report(running.id, "h:1", stage="coarse", progress=0.3, eta_s=5, message="x", preview=None)
    store.finish(running.id, "h:1", CANCELLED)
    with pytest.raises(NotFinished):
        store.cancel(running.id)


def test_only_the_holder_may_finish(store):
    job = store.submit("u", _spec(), 10, 10)
    store.claim_next("h:1")
    store.finish(job.id, "h:2", SUCCEEDED, artifacts=["model.glb"])
    assert store.get(job.id).state == RUNNING
    store.finish(job.id, "h:1", SUCCEEDED, artifacts=["model.glb"])
    done = store.get(job.id)
    assert done.state == SUCCEEDED and done.progress == 1.0 and done.artifacts == ["model.glb"]


def test_a_job_is_claimed_once(store):
    store.submit("u", _spec(), 10, 10)
    assert store.claim_next("h:1") is not None
    assert store.claim_next("h:2") is None


def test_recovery_requeues_then_fails(store):
    job = store.submit("u", _spec(), 10, 10)
    dead = f"{socket.gethostname()}:999999"  # a pid that does not exist on this host
    for attempt in (1, 2):
        assert store.claim_next(dead).id == job.id
        store.report(job.id, dead, stage="coarse", progress=0.4, eta_s=3, message="", preview=None)
        changed = store.recover(stale_after_s=3600, max_attempts=2)
        state = store.get(job.id)
        if attempt == 1:
            assert [c.id for c in changed] == [job.id] and state.state == QUEUED
            assert "resume" in state.message
        else:
            assert state.state == FAILED and "coarse" in state.error and state.finished_at is not None


def test_recovery_leaves_live_workers_alone_until_stale(store):
    job = store.submit("u", _spec(), 10, 10)
    me = f"{socket.gethostname()}:{os.getpid()}"
    store.claim_next(me)
    assert store.recover(stale_after_s=3600, max_attempts=3) == []
    with store._tx() as s:
        s.get(JobRow, job.id).heartbeat_at = utcnow() - timedelta(hours=2)
    assert [j.id for j in store.recover(stale_after_s=3600, max_attempts=3)] == [job.id]


def test_expired_and_purged(store):
    job = store.submit("u", _spec(), 10, 10)
    store.claim_next("h:1")
    store.finish(job.id, "h:1", SUCCEEDED, artifacts=["model.glb"])
    assert store.expired(3600) == []
    with store._tx() as s:
        s.get(JobRow, job.id).finished_at = utcnow() - timedelta(days=30)
    assert [j.id for j in store.expired(3600)] == [job.id]
    store.mark_purged(job.id)
    assert store.get(job.id).artifacts == [] and store.expired(3600) == []


def test_database_is_sqlite_wal(tmp_path):
    JobStore(f"sqlite:///{tmp_path / 'x.db'}").submit("u", _spec(), 1, 1)
    con = sqlite3.connect(tmp_path / "x.db")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
