"""ESD, Entropic Score Distillation: VSD whose fake score mixes camera-free and camera-conditioned.

g = w(t) [eps_hat_s(x_t; y) - (lam eps_psi(x_t; y, no camera) + (1 - lam) eps_psi(x_t; y, c))].
Re-adding lam x the entropy of the camera-marginal render distribution counters the per-view
mode collapse (Janus) of VSD/SDS (reference §4); lam = 1 - threestudio's ``guidance_scale_lora``.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from dreamer.config import Ramp, scheduled
from dreamer.objectives.lora import FakeBranch
from dreamer.objectives.vsd import VariationalConfig, VariationalObjective


class ESDConfig(VariationalConfig):
    name: Literal["esd"] = "esd"
    guidance_scale: float = 7.5
    #: entropy weight lam (the authors suggest 0.5; scene dependent)
    entropy_weight: float | Ramp = 0.5


class ESD(VariationalObjective):
    fake_branches: tuple[FakeBranch, ...] = ("camera", "nocamera")
    cfg: ESDConfig  # type: ignore[assignment]

    def direction(self, eps_hat: Tensor, fake: Tensor, step: int) -> Tensor:
        lam = scheduled(self.cfg.entropy_weight, step)
        return eps_hat - (lam * fake[1] + (1.0 - lam) * fake[0])
