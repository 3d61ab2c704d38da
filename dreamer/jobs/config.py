"""The operator's settings for the studio (server, workers, store), from flags or ``DREAMER_*`` variables.

Everything a user may not choose lives here: where outputs go, which folders priors and reference
meshes may come from, queue bounds, retention and who may log in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _env_list(name: str) -> list[str]:
    return [p for p in os.environ.get(name, "").split(os.pathsep) if p]


def _env_pairs(name: str) -> dict[str, str]:
    """``a:b,c:d`` -> {a: b, c: d} (user:password or token:user)."""
    pairs = {}
    for item in os.environ.get(name, "").split(","):
        if ":" in item:
            key, _, value = item.partition(":")
            pairs[key.strip()] = value.strip()
    return pairs


@dataclass
class StudioConfig:
    #: the output store: every job's run folder lives under root/runs/<job id>
    root: Path = field(default_factory=lambda: Path(os.environ.get("DREAMER_STUDIO_ROOT", "studio")))
    #: a SQLAlchemy URL; default: SQLite in root/jobs.db
    db_url: str | None = field(default_factory=lambda: os.environ.get("DREAMER_DB_URL") or None)
    #: worker processes started by ``dreamer serve``; None: one per GPU, or one on a CPU machine
    workers: int | None = None
    #: the prior used when a job names none (operator's choice, e.g. reference:assets/demo/duck.glb)
    default_prior: str | None = field(default_factory=lambda: os.environ.get("DREAMER_DEFAULT_PRIOR") or None)
    #: settings applied to every job before the user's (e.g. tiny runs for a demo)
    default_overrides: dict[str, object] = field(default_factory=dict)
    #: folders that ``reference:`` meshes may come from
    reference_dirs: list[Path] = field(
        default_factory=lambda: [Path(p) for p in _env_list("DREAMER_REFERENCE_DIRS")]
    )
    #: folders that local diffusers model folders may come from
    model_dirs: list[Path] = field(default_factory=lambda: [Path(p) for p in _env_list("DREAMER_MODEL_DIRS")])
    #: hub ids users may name besides the built-in aliases
    allowed_priors: list[str] = field(default_factory=lambda: _env_list("DREAMER_ALLOWED_PRIORS"))
    max_queued: int = field(default_factory=lambda: int(os.environ.get("DREAMER_MAX_QUEUED", "200")))
    max_queued_per_user: int = field(
        default_factory=lambda: int(os.environ.get("DREAMER_MAX_QUEUED_PER_USER", "5"))
    )
    #: a running job is retried this many times after its worker died, then fails
    max_attempts: int = 3
    #: a running job whose worker has not reported for this long is taken as dead
    stale_after_s: float = 120.0
    #: finished jobs' outputs are deleted after this many days (0: never)
    retention_days: float = field(
        default_factory=lambda: float(os.environ.get("DREAMER_RETENTION_DAYS", "14"))
    )
    #: token -> user name (``Authorization: Bearer TOKEN``)
    tokens: dict[str, str] = field(default_factory=lambda: _env_pairs("DREAMER_TOKENS"))
    #: user name -> password (HTTP basic, and the web UI's login)
    passwords: dict[str, str] = field(default_factory=lambda: _env_pairs("DREAMER_USERS"))
    #: the device workers run on (None: the preset's)
    device: str | None = None

    @property
    def auth_enabled(self) -> bool:
        return bool(self.tokens or self.passwords)

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def resolved_db_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite:///{(self.root / 'jobs.db').resolve()}"

    def worker_count(self) -> int:
        """One per GPU, one on a CPU machine (a prior stays warm in each)."""
        if self.workers is not None:
            return max(1, self.workers)
        try:
            import torch

            return max(1, torch.cuda.device_count())
        except Exception:  # noqa: BLE001 - no torch / broken CUDA: one CPU worker
            return 1

    def prepare(self) -> StudioConfig:
        """Create the store folders; resolve every operator folder to an absolute path."""
        self.root = self.root.expanduser().resolve()
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.reference_dirs = [p.expanduser().resolve() for p in self.reference_dirs]
        self.model_dirs = [p.expanduser().resolve() for p in self.model_dirs]
        return self
