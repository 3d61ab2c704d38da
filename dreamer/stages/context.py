"""What a stage gets to work with: the run's settings, its folder, its device and its prior.

The prior is loaded on first use, so stages that do not need it (extract, texture, export) and
a resumed run past the coarse stage never load model weights.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from dreamer.priors.base import Prior, Prompt

if TYPE_CHECKING:  # the preset schema imports every stage's config
    from dreamer.presets import RunConfig


@dataclass
class ProgressEvent:
    """One progress report of a stage; ``preview`` is the latest preview image, if any."""

    stage: str
    step: int
    total: int
    elapsed_s: float
    message: str = ""
    preview: Path | None = None

    @property
    def eta_s(self) -> float | None:
        if self.step <= 0 or self.total <= 0:
            return None
        return self.elapsed_s * (self.total - self.step) / self.step


ProgressCallback = Callable[[ProgressEvent], None]


@dataclass
class RunContext:
    out: Path
    cfg: RunConfig
    prompt: str
    negative: str
    seed: int
    device: torch.device
    prior_spec: str
    on_progress: ProgressCallback | None = None
    #: per-stage facts worth keeping in run.json (chosen iso-level, face counts, ...)
    stage_info: dict[str, dict] = field(default_factory=dict)
    _prior: Prior | None = field(default=None, repr=False)
    _prompt: Prompt | None = field(default=None, repr=False)

    @property
    def checkpoints(self) -> Path:
        return self.out / "checkpoints"

    @property
    def prior(self) -> Prior:
        if self._prior is None:
            from dreamer.priors.load import load_prior

            self._prior = load_prior(self.prior_spec, self.device)
        return self._prior

    @property
    def embedded_prompt(self) -> Prompt:
        if self._prompt is None:
            self._prompt = self.prior.encode_prompt(self.prompt, self.negative)
        return self._prompt

    def generator(self, salt: int) -> torch.Generator:
        """A CPU generator seeded from the run's seed and a per-purpose salt (no global state)."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + salt)

    def report(self, stage: str, step: int, total: int, started: float, message: str = "", preview: Path | None = None):
        if self.on_progress is not None:
            self.on_progress(ProgressEvent(stage, step, total, time.perf_counter() - started, message, preview))
