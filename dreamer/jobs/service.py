"""The one facade the HTTP API, the web UI and the CLI share: submit, read, cancel, download.

Owner checks and path checks live here, once: a user only ever sees their own jobs, and a file is
only ever served from inside that job's run folder, by a name from a fixed list.
"""

from __future__ import annotations

from pathlib import Path

from dreamer.errors import DreamerError
from dreamer.jobs.config import StudioConfig
from dreamer.jobs.spec import JobRequest, validate_request
from dreamer.jobs.store import Job, JobStore
from dreamer.jobs.worker import ARTIFACTS

USER_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-@")


class NotFound(Exception):
    """No such job for this user, or no such file (HTTP 404)."""


def check_user(name: str) -> str:
    """User names become database keys and log lines: short, printable, no separators."""
    if not name or len(name) > 64 or not set(name) <= USER_CHARS:
        raise DreamerError("user names are 1-64 letters, digits, '_', '.', '-' or '@'")
    return name


class JobService:
    def __init__(self, config: StudioConfig, store: JobStore | None = None) -> None:
        self.config = config.prepare()
        self.store = store or JobStore(config.resolved_db_url())

    def warm_up(self) -> None:
        """Import what validation needs (torch among it) now, not on the first request."""
        import dreamer.priors.diffusers_prior  # noqa: F401
        import dreamer.stages.pipeline  # noqa: F401

    def submit(self, user: str, request: JobRequest) -> Job:
        """Validate fully, then queue (raises DreamerError, QueueFull or UserLimit)."""
        spec = validate_request(request, self.config)
        return self.store.submit(
            check_user(user), spec, self.config.max_queued, self.config.max_queued_per_user
        )

    def get(self, user: str, job_id: str) -> Job:
        job = self.store.get(job_id, owner=user) if len(job_id) <= 64 else None
        if job is None:
            raise NotFound(f"no job {job_id[:64]} among your jobs")
        return job

    def list(
        self, user: str | None, states: tuple[str, ...] | None = None, limit: int = 100, offset: int = 0
    ) -> list[Job]:
        return self.store.list(owner=user, states=states, limit=limit, offset=offset)

    def cancel(self, user: str | None, job_id: str) -> Job:
        job = self.store.cancel(job_id, owner=user) if len(job_id) <= 64 else None
        if job is None:
            raise NotFound(f"no job {job_id[:64]} among your jobs")
        return job

    def run_folder(self, job: Job) -> Path:
        return (self.config.runs_dir / job.id).resolve()

    def _inside(self, job: Job, relative: str) -> Path:
        folder = self.run_folder(job)
        path = (folder / relative).resolve()
        if not path.is_relative_to(folder) or not path.is_file():
            raise NotFound(f"job {job.id} has no file {relative[:64]}")
        return path

    def artifact(self, user: str, job_id: str, name: str) -> Path:
        """A finished job's file, by one of the fixed names (anything else is refused)."""
        if name not in ARTIFACTS:
            raise DreamerError(f"unknown file '{name[:64]}': one of {', '.join(ARTIFACTS)}")
        job = self.get(user, job_id)
        if name not in job.artifacts:
            if job.purged:
                raise NotFound(f"job {job.id}'s outputs were removed by the retention policy")
            raise NotFound(f"job {job.id} has no {name} (it is {job.state})")
        return self._inside(job, name)

    def preview(self, user: str, job_id: str) -> Path:
        """The latest preview image of a running or finished job."""
        job = self.get(user, job_id)
        for candidate in ([job.preview] if job.preview else []) + [
            "preview.png",
            "previews/coarse_latest.png",
        ]:
            try:
                return self._inside(job, candidate)
            except NotFound:
                continue
        raise NotFound(f"job {job.id} has no preview yet")

    def presets(self) -> list[dict]:
        from dreamer.preset_files import preset_names
        from dreamer.presets import load_preset

        result = []
        for name in preset_names():
            cfg = load_preset(name)
            result.append(
                {
                    "name": name,
                    "description": cfg.description,
                    "time": cfg.expected.time,
                    "memory": cfg.expected.memory,
                }
            )
        return result
