"""The job store: every job, its state and its progress, in one SQL database.

The database *is* the queue: workers claim jobs with an atomic UPDATE, so a job is never run
twice and never lost when a process dies. SQLite (the default, WAL mode) serves one host;
any SQLAlchemy URL (``postgresql+psycopg://...``) serves several.

States: queued -> running -> succeeded | failed | cancelled. A running job whose worker died goes
back to queued (it resumes from its checkpoint) or, after ``max_attempts``, ends failed with the
reason.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    Integer,
    String,
    Text,
    create_engine,
    event,
    func,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
ACTIVE = (QUEUED, RUNNING)
FINISHED = (SUCCEEDED, FAILED, CANCELLED)


class QueueFull(Exception):
    """The whole queue is at its bound: try later (HTTP 503)."""


class UserLimit(Exception):
    """This user already has as many queued jobs as allowed (HTTP 429)."""


class NotFinished(Exception):
    """The operation needs a job in another state (HTTP 409)."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _aware(value: datetime | None) -> datetime | None:
    """SQLite drops the timezone; every stored time is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


class _Base(DeclarativeBase):
    pass


class JobRow(_Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True, default=QUEUED)
    spec: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    stage: Mapped[str | None] = mapped_column(String(32), nullable=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    eta_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    preview: Mapped[str | None] = mapped_column(String(128), nullable=True)
    artifacts: Mapped[list] = mapped_column(JSON, default=list)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(128), nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    purged: Mapped[bool] = mapped_column(Boolean, default=False)


@dataclass(frozen=True)
class Job:
    """A snapshot of one job (plain data, safe to hand across threads and to JSON)."""

    id: str
    owner: str
    state: str
    spec: dict
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    heartbeat_at: datetime | None
    stage: str | None
    progress: float
    eta_s: float | None
    message: str | None
    error: str | None
    preview: str | None
    artifacts: list[str]
    attempts: int
    worker: str | None
    cancel_requested: bool
    purged: bool
    position: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        for key in ("created_at", "started_at", "finished_at", "updated_at", "heartbeat_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return data


def _snapshot(row: JobRow, position: int | None = None) -> Job:
    return Job(
        id=row.id,
        owner=row.owner,
        state=row.state,
        spec=dict(row.spec),
        created_at=_aware(row.created_at),
        started_at=_aware(row.started_at),
        finished_at=_aware(row.finished_at),
        updated_at=_aware(row.updated_at),
        heartbeat_at=_aware(row.heartbeat_at),
        stage=row.stage,
        progress=row.progress,
        eta_s=row.eta_s,
        message=row.message,
        error=row.error,
        preview=row.preview,
        artifacts=list(row.artifacts or []),
        attempts=row.attempts,
        worker=row.worker,
        cancel_requested=row.cancel_requested,
        purged=row.purged,
        position=position,
    )


def worker_name() -> str:
    """``host:pid``: recovery uses it to tell a dead local worker from a live remote one."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _worker_dead_here(worker: str | None) -> bool:
    """True when ``worker`` ran on this host and its process is gone."""
    if not worker or ":" not in worker:
        return False
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    return not _pid_alive(int(pid))


def make_engine(url: str) -> Engine:
    """An engine; SQLite gets WAL and a busy timeout so the server and workers share it safely."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # noqa: ANN001 - DBAPI connection
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


class JobStore:
    """All reads and writes of jobs; every method is one short transaction."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        _Base.metadata.create_all(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # submits from one server are serialised so the bounds hold exactly; across servers
        # (PostgreSQL) a race can overshoot a bound by one job, never lose one
        self._submit_lock = threading.Lock()

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()

    # -- submitting and reading --------------------------------------------------------------------
    def submit(self, owner: str, spec: dict, max_queued: int, max_queued_per_user: int) -> Job:
        """Queue a job, refusing past the global bound or the owner's own bound."""
        with self._submit_lock, self._tx() as s:
            queued = s.scalar(select(func.count()).select_from(JobRow).where(JobRow.state == QUEUED)) or 0
            if queued >= max_queued:
                raise QueueFull(f"the queue is full ({queued} jobs waiting); try again later")
            mine = (
                s.scalar(
                    select(func.count())
                    .select_from(JobRow)
                    .where(JobRow.state == QUEUED, JobRow.owner == owner)
                )
                or 0
            )
            if mine >= max_queued_per_user:
                raise UserLimit(
                    f"you already have {mine} queued jobs (the limit is {max_queued_per_user}); "
                    "wait for one to start or cancel one"
                )
            now = utcnow()
            row = JobRow(
                id=uuid.uuid4().hex,
                owner=owner,
                state=QUEUED,
                spec=spec,
                created_at=now,
                updated_at=now,
                progress=0.0,
                artifacts=[],
                attempts=0,
                cancel_requested=False,
                purged=False,
                message="waiting in the queue",
            )
            s.add(row)
            s.flush()
            return _snapshot(row, self._position(s, row))

    @staticmethod
    def _position(s: Session, row: JobRow) -> int | None:
        """1 = next to start. Order: created time, then id (ties are broken the same everywhere)."""
        if row.state != QUEUED:
            return None
        ahead = (
            s.scalar(
                select(func.count())
                .select_from(JobRow)
                .where(
                    JobRow.state == QUEUED,
                    (JobRow.created_at < row.created_at)
                    | ((JobRow.created_at == row.created_at) & (JobRow.id < row.id)),
                )
            )
            or 0
        )
        return ahead + 1

    def get(self, job_id: str, owner: str | None = None) -> Job | None:
        """The job, or None when it does not exist or belongs to someone else."""
        with self._tx() as s:
            row = s.get(JobRow, job_id)
            if row is None or (owner is not None and row.owner != owner):
                return None
            return _snapshot(row, self._position(s, row))

    def list(
        self,
        owner: str | None = None,
        states: tuple[str, ...] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Job]:
        """Jobs newest first, with queue positions."""
        with self._tx() as s:
            query = select(JobRow)
            if owner is not None:
                query = query.where(JobRow.owner == owner)
            if states:
                query = query.where(JobRow.state.in_(states))
            rows = s.scalars(
                query.order_by(JobRow.created_at.desc(), JobRow.id.desc()).limit(limit).offset(offset)
            )
            rows = list(rows)
            queued = list(
                s.execute(
                    select(JobRow.id).where(JobRow.state == QUEUED).order_by(JobRow.created_at, JobRow.id)
                ).scalars()
            )
            positions = {job_id: i + 1 for i, job_id in enumerate(queued)}
            return [_snapshot(r, positions.get(r.id)) for r in rows]

    def counts(self) -> dict[str, int]:
        with self._tx() as s:
            rows = s.execute(select(JobRow.state, func.count()).group_by(JobRow.state)).all()
            return {state: 0 for state in STATES} | {state: n for state, n in rows}

    # -- cancelling ----------------------------------------------------------------------------------
    def cancel(self, job_id: str, owner: str | None = None) -> Job | None:
        """A queued job ends at once; a running one is flagged and its worker stops at the next step."""
        with self._tx() as s:
            row = s.get(JobRow, job_id, with_for_update=True)
            if row is None or (owner is not None and row.owner != owner):
                return None
            if row.state in FINISHED:
                raise NotFinished(f"job {job_id} has already {row.state}; there is nothing to cancel")
            now = utcnow()
            row.cancel_requested = True
            row.updated_at = now
            if row.state == QUEUED:
                row.state = CANCELLED
                row.finished_at = now
                row.message = "cancelled before it started"
            else:
                row.message = "cancelling at the next step"
            return _snapshot(row, None)

    def cancel_requested(self, job_id: str) -> bool:
        with self._tx() as s:
            return bool(s.scalar(select(JobRow.cancel_requested).where(JobRow.id == job_id)))

    # -- workers -------------------------------------------------------------------------------------
    def claim_next(self, worker: str) -> Job | None:
        """Atomically take the oldest queued job (the UPDATE only wins if it is still queued)."""
        for _ in range(5):
            with self._tx() as s:
                job_id = s.scalar(
                    select(JobRow.id)
                    .where(JobRow.state == QUEUED)
                    .order_by(JobRow.created_at, JobRow.id)
                    .limit(1)
                )
                if job_id is None:
                    return None
                now = utcnow()
                won = s.execute(
                    update(JobRow)
                    .where(JobRow.id == job_id, JobRow.state == QUEUED)
                    .values(
                        state=RUNNING,
                        worker=worker,
                        started_at=func.coalesce(JobRow.started_at, now),
                        heartbeat_at=now,
                        updated_at=now,
                        attempts=JobRow.attempts + 1,
                        message="starting",
                    )
                ).rowcount
                if won:
                    row = s.get(JobRow, job_id)
                    s.refresh(row)
                    return _snapshot(row)
        return None

    def heartbeat(self, job_id: str, worker: str) -> None:
        with self._tx() as s:
            s.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.worker == worker, JobRow.state == RUNNING)
                .values(heartbeat_at=utcnow())
            )

    def report(
        self,
        job_id: str,
        worker: str,
        *,
        stage: str,
        progress: float,
        eta_s: float | None,
        message: str | None,
        preview: str | None,
    ) -> bool:
        """Record progress; returns True when the job should stop (cancelled, or no longer ours)."""
        with self._tx() as s:
            now = utcnow()
            values: dict[str, Any] = dict(
                stage=stage,
                progress=max(0.0, min(1.0, progress)),
                eta_s=eta_s,
                message=message,
                heartbeat_at=now,
                updated_at=now,
            )
            if preview:
                values["preview"] = preview
            s.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.worker == worker, JobRow.state == RUNNING)
                .values(**values)
            )
            row = s.execute(
                select(JobRow.state, JobRow.worker, JobRow.cancel_requested).where(JobRow.id == job_id)
            ).one_or_none()
            return row is None or row.state != RUNNING or row.worker != worker or bool(row.cancel_requested)

    def finish(
        self,
        job_id: str,
        worker: str,
        state: str,
        *,
        error: str | None = None,
        artifacts: list[str] | None = None,
        message: str | None = None,
    ) -> None:
        """End a running job (only the worker that holds it may)."""
        assert state in FINISHED
        with self._tx() as s:
            now = utcnow()
            values: dict[str, Any] = dict(
                state=state,
                finished_at=now,
                updated_at=now,
                heartbeat_at=now,
                error=error,
                message=message,
                eta_s=None,
            )
            if state == SUCCEEDED:
                values["progress"] = 1.0
                values["stage"] = "done"
            if artifacts is not None:
                values["artifacts"] = artifacts
            s.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.worker == worker, JobRow.state == RUNNING)
                .values(**values)
            )

    def release(self, job_id: str, worker: str, message: str) -> None:
        """Hand a running job back to the queue (a worker shutting down cleanly); it resumes later."""
        with self._tx() as s:
            s.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.worker == worker, JobRow.state == RUNNING)
                .values(
                    state=QUEUED,
                    worker=None,
                    message=message,
                    updated_at=utcnow(),
                    attempts=JobRow.attempts - 1,
                )
            )

    # -- recovery and retention ------------------------------------------------------------------------
    def recover(self, stale_after_s: float, max_attempts: int, everything_local: bool = False) -> list[Job]:
        """Deal with running jobs whose worker is gone: requeue them to resume, or fail them.

        A worker is gone when its process on this host no longer exists, when its heartbeat is older
        than ``stale_after_s``, or (``everything_local``: the server just started and owns all
        workers) always. Returns the jobs it changed.
        """
        changed = []
        with self._tx() as s:
            cutoff = utcnow() - timedelta(seconds=stale_after_s)
            for row in s.scalars(select(JobRow).where(JobRow.state == RUNNING)).all():
                beat = _aware(row.heartbeat_at)
                gone = everything_local or _worker_dead_here(row.worker) or beat is None or beat < cutoff
                if not gone:
                    continue
                now = utcnow()
                where = f" during the {row.stage} stage" if row.stage else ""
                row.updated_at = now
                row.worker = None
                if row.cancel_requested:
                    row.state, row.finished_at, row.message = CANCELLED, now, "cancelled"
                elif row.attempts >= max_attempts:
                    row.state, row.finished_at = FAILED, now
                    row.error = (
                        f"the worker stopped unexpectedly{where} {row.attempts} times "
                        "(crash, out of memory or a restart); giving up"
                    )
                    row.message = None
                else:
                    row.state = QUEUED
                    row.message = f"the worker stopped{where}; will resume from the last checkpoint"
                changed.append(_snapshot(row))
        return changed

    def expired(self, older_than_s: float) -> list[Job]:
        """Finished jobs older than the retention period whose outputs are still on disk."""
        with self._tx() as s:
            cutoff = utcnow() - timedelta(seconds=older_than_s)
            rows = s.scalars(
                select(JobRow).where(
                    JobRow.state.in_(FINISHED), JobRow.purged.is_(False), JobRow.finished_at < cutoff
                )
            ).all()
            return [_snapshot(r) for r in rows]

    def mark_purged(self, job_id: str) -> None:
        with self._tx() as s:
            s.execute(
                update(JobRow)
                .where(JobRow.id == job_id)
                .values(
                    purged=True,
                    artifacts=[],
                    preview=None,
                    updated_at=utcnow(),
                    message="outputs removed by the retention policy",
                )
            )
