"""VSD, Variational Score Distillation (ProlificDreamer).

g = w(t) (eps_hat_s(x_t; y_view) - eps_psi(x_t; y, c)).

The random noise of SDS is replaced by a fake score eps_psi that tracks the distribution of the
current renders (a camera-conditioned LoRA, ``lora.py``), so the optimum is a *sample* of the
prior rather than its mode. ``VariationalObjective`` is the machinery ESD and DSD reuse: they
differ only in how the teacher and fake predictions are combined (``direction``).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from dreamer.config import Ramp
from dreamer.objectives.base import ObjectiveOutput, TimestepSchedule
from dreamer.objectives.common import (
    ConfiguredObjective,
    WeightedConfig,
    draw_t_and_noise,
    guided_noise,
    output,
    weighted_gradient,
)
from dreamer.objectives.lora import FakeBranch, FakeScore, LoRAConfig, LoRAFakeScore
from dreamer.objectives.perp_neg import PerpNegConfig
from dreamer.priors.base import Prior, Prompt, Views

#: ProlificDreamer's t schedule: U(0.02, 0.98) for 5k steps, then U(0.02, 0.5)
VSD_TIMESTEPS = TimestepSchedule(t_max=Ramp(start=5000, end=5000, v0=0.98, v1=0.5))


class VariationalConfig(WeightedConfig):
    """What VSD, ESD and DSD share: VSD's t schedule, the LoRA fake score and the optional Perp-Neg."""

    timesteps: TimestepSchedule = VSD_TIMESTEPS
    lora: LoRAConfig = LoRAConfig()
    perp_neg: PerpNegConfig = PerpNegConfig()


class VSDConfig(VariationalConfig):
    name: Literal["vsd"] = "vsd"
    #: diffusers-convention CFG scale of the teacher
    guidance_scale: float = 7.5


class VariationalObjective(ConfiguredObjective):
    """Teacher eps vs a trained fake score; subclasses define the combination.

    ``cfg`` is a VSD, ESD or DSD config; ``fake_score`` overrides the LoRA (analytic priors).
    """

    #: which fake-score branches ``direction`` needs
    fake_branches: tuple[FakeBranch, ...] = ("camera",)

    cfg: Any

    def __init__(self, prior: Prior, cfg: Any, fake_score: FakeScore | None = None) -> None:
        super().__init__(prior, cfg)
        self.fake = fake_score if fake_score is not None else LoRAFakeScore(prior, cfg.lora)

    def teacher(self, x_t: Tensor, t: Tensor, prompt: Prompt, views: Views, step: int) -> Tensor:
        return guided_noise(self.prior, x_t, t, prompt, views, self.cfg.guidance_scale, self.cfg.perp_neg)

    def direction(self, eps_hat: Tensor, fake: Tensor, step: int) -> Tensor:
        """VSD: eps_hat_s - eps_psi(camera)."""
        return eps_hat - fake[0]

    def __call__(
        self,
        images: Tensor,
        views: Views,
        prompt: Prompt,
        step: int,
        total_steps: int,
        generator: torch.Generator,
    ) -> ObjectiveOutput:
        x = self.prior.encode(images)
        t, noise = draw_t_and_noise(self.prior, self.cfg.timesteps, x, step, total_steps, generator)
        with torch.no_grad():
            x_t = self.prior.add_noise(x.detach(), noise, t)
            eps_hat = self.teacher(x_t, t, prompt, views, step)
            self.fake.observe(x.detach())
            fake = self.fake.noise(x_t, t, prompt, views, self.fake_branches)
            g = weighted_gradient(self.prior, self.cfg, self.direction(eps_hat, fake, step), t)
        fake_loss = self.fake.train(x.detach(), views, prompt, generator)
        return output(x, g, t, fake_loss=fake_loss)

    def state_dict(self) -> dict:
        return self.fake.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.fake.load_state_dict(state)


class VSD(VariationalObjective):
    """ProlificDreamer's VSD (reference §2)."""
