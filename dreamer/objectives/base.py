"""The objective contract shared by SDS and the rest of the score-distillation family.

An objective turns a rendered batch into a gradient direction ``g`` in the prior's space and
returns the loss that carries it, ``0.5 * ((x - (x - g).detach()) ** 2).sum() / B``, whose
gradient with respect to ``x`` is exactly ``g / B``. Its value means nothing: log ``grad_norm``.

Classifier-free guidance is written in the diffusers convention everywhere in Dreamer:
``eps = eps(uncond) + s * (eps(cond) - eps(uncond))``. DreamFusion's weight omega is ``s - 1``
(threestudio's SDS ``guidance_scale: 100`` is ``s = 101`` here).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Literal

import torch
from pydantic import model_validator
from torch import Tensor

from dreamer.config import Ramp, Strict, scheduled
from dreamer.priors.base import Prior, Prompt, Views

Weighting = Literal["sds", "uniform", "fantasia3d"]


class TimestepSchedule(Strict):
    """Where t is drawn from, as fractions of the prior's T training steps.

    ``random``: t ~ U[t_min, t_max(step)]; ``sqrt``: HiFA's deterministic
    ``t_max - (t_max - t_min) * sqrt(step / total)``.
    """

    t_min: float = 0.02
    t_max: float | Ramp = 0.98
    anneal: Literal["random", "sqrt"] = "random"

    @model_validator(mode="after")
    def _in_range(self) -> TimestepSchedule:
        hi = [self.t_max.v0, self.t_max.v1] if isinstance(self.t_max, Ramp) else [self.t_max]
        if not 0.0 <= self.t_min < min(hi) <= 1.0:
            raise ValueError(f"need 0 <= t_min < t_max <= 1, got t_min={self.t_min}, t_max={self.t_max}")
        return self

    def sample(self, batch: int, step: int, total: int, num_train: int, generator: torch.Generator) -> Tensor:
        """[B] integer timesteps (on the CPU)."""
        lo = self.t_min
        hi = scheduled(self.t_max, step)
        if self.anneal == "sqrt":
            frac = hi - (hi - lo) * (step / max(total, 1)) ** 0.5
            return torch.full((batch,), round(frac * (num_train - 1)), dtype=torch.long)
        lo_i, hi_i = int(lo * num_train), max(int(hi * num_train), int(lo * num_train) + 1)
        return torch.randint(lo_i, hi_i, (batch,), generator=generator)


def timestep_weight(weighting: Weighting, alpha: Tensor, sigma: Tensor) -> Tensor:
    """w(t): DreamFusion/threestudio ``sds`` = sigma^2, ``uniform`` = 1, ``fantasia3d`` = alpha sigma^2."""
    if weighting == "sds":
        return sigma**2
    if weighting == "uniform":
        return torch.ones_like(sigma)
    return alpha * sigma**2


def reparametrised_loss(x: Tensor, g: Tensor) -> Tensor:
    """A scalar whose gradient with respect to ``x`` is ``g / B`` (B = batch size)."""
    target = (x - g).detach()
    return 0.5 * ((x - target) ** 2).sum() / x.shape[0]


@dataclass
class ObjectiveOutput:
    loss: Tensor
    grad_norm: float
    t: Tensor
    extras: dict[str, float] = field(default_factory=dict)


class Objective(ABC):
    """A score-distillation rule. Sees the prior only through the ``Prior`` contract."""

    def __init__(self, prior: Prior) -> None:
        self.prior = prior

    @abstractmethod
    def __call__(
        self,
        images: Tensor,
        views: Views,
        prompt: Prompt,
        step: int,
        total_steps: int,
        generator: torch.Generator,
    ) -> ObjectiveOutput:
        """Loss for renders [B, H, W, 3] in [0, 1] that carries the objective's gradient."""

    def state_dict(self) -> dict:
        """What a checkpoint must keep of the objective's own trained parts (VSD's LoRA and its
        optimiser, for instance); nothing for stateless rules. The objective trains them itself."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} keeps no state, got {sorted(state)}")


def finalise_gradient(g: Tensor, weight: Tensor, clip: float | None) -> Tensor:
    """Apply w(t) (per sample), drop NaNs and optionally clamp, as every method does."""
    g = weight.view(-1, *([1] * (g.ndim - 1))) * g
    g = torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)
    if clip is not None:
        g = g.clamp(-clip, clip)
    return g
