"""ISM, Interval Score Matching (LucidDreamer): SDS's noisy target replaced by DDIM inversion.

x_s is reached from x by deterministic DDIM inversion with the null prompt (scale 1), x_t by one
more inversion step of size delta_T from x_s; g = w(t) [eps_hat_s(x_t; y, t) - eps(x_s; null, s)]
with w = sigma_t / alpha_t (reference §9). Costs the inversion steps (<= ``inversion_steps``) + 2.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from dreamer.config import Ramp, scheduled
from dreamer.objectives.base import ObjectiveOutput, TimestepSchedule
from dreamer.objectives.common import (
    ConfiguredObjective,
    PerpNegGuidedConfig,
    PromptVariants,
    bshape,
    guided_noise,
    output,
    weighted_gradient,
)
from dreamer.priors.base import Prior, Prompt, Views


class ISMConfig(PerpNegGuidedConfig):
    name: Literal["ism"] = "ism"
    #: delta_T in timesteps: 100 -> 50 over the 1500-step warm-up
    interval: float | Ramp = Ramp(start=0, end=1500, v0=100.0, v1=50.0)
    #: inversion from 0 to s in strides of ``inversion_stride``, at most ``inversion_steps`` of them
    inversion_stride: int = 200
    inversion_steps: int = 5
    weighting: Literal["sigma_ve", "sds", "uniform"] = "sigma_ve"  # type: ignore[assignment]
    #: U[0.02, 0.5), extended towards 0.98 during a 1500-step warm-up
    timesteps: TimestepSchedule = TimestepSchedule(t_max=Ramp(start=0, end=1500, v0=0.98, v1=0.5))


def ddim_step(x_a: Tensor, eps: Tensor, a_a: Tensor, s_a: Tensor, a_b: Tensor, s_b: Tensor) -> Tensor:
    """Deterministic DDIM move from timestep a to b given eps at a (either direction)."""
    x0 = (x_a - bshape(s_a, x_a) * eps) / bshape(a_a, x_a)
    return bshape(a_b, x_a) * x0 + bshape(s_b, x_a) * eps


class ISM(ConfiguredObjective):
    cfg: ISMConfig

    def __init__(self, prior: Prior, cfg: ISMConfig) -> None:
        super().__init__(prior, cfg)
        self.variants = PromptVariants(prior)

    def _null_eps(self, x: Tensor, t: Tensor, null: Prompt, views: Views) -> Tensor:
        return self.prior.predict_noise(x, t, null, views, ("uncond",))[0]

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
        b, num_train = x.shape[0], self.prior.num_train_timesteps
        delta = int(scheduled(self.cfg.interval, step))
        t = self.cfg.timesteps.sample(b, step, total_steps, num_train, generator)
        t = t.clamp(min=delta + 1).to(x.device)
        s = t - delta
        null = self.variants.null(prompt)
        with torch.no_grad():
            # invert 0 -> s in equal strides (per sample s, shared stride count)
            n_steps = max(
                1, min(self.cfg.inversion_steps, math.ceil(int(s.max()) / self.cfg.inversion_stride))
            )
            cur_t = torch.zeros_like(s)
            x_cur = x.detach()
            for i in range(1, n_steps + 1):
                nxt = (s.float() * i / n_steps).round().long()
                eps = self._null_eps(x_cur, cur_t, null, views)
                x_cur = ddim_step(x_cur, eps, *self.prior.alpha_sigma(cur_t), *self.prior.alpha_sigma(nxt))
                cur_t = nxt
            eps_s = self._null_eps(x_cur, s, null, views)
            x_t = ddim_step(x_cur, eps_s, *self.prior.alpha_sigma(s), *self.prior.alpha_sigma(t))
            eps_hat = guided_noise(
                self.prior, x_t, t, prompt, views, self.cfg.guidance_scale, self.cfg.perp_neg
            )
            g = weighted_gradient(self.prior, self.cfg, eps_hat - eps_s, t)
        return output(x, g, t, inversion_steps=n_steps)
