"""CSD, Classifier Score Distillation: only the implicit-classifier (CFG) term, no noise residual.

g = w(t) [eps(y) + a_u eps(y-) + a_n eps(null)] x scale (reference §7). With a negative prompt
the official configs anneal (a_u, a_n) from (0, -1) to (-1, 0), i.e. from eps(y) - eps(null) to
eps(y) - eps(y-). a_u + a_n must be -1 for the direction to vanish where the prompts agree.
Without a negative prompt eps(y-) = eps(null). Adam absorbs ``scale``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from dreamer.config import Ramp, scheduled
from dreamer.objectives.base import ObjectiveOutput, TimestepSchedule, Weighting
from dreamer.objectives.common import (
    ConfiguredObjective,
    PromptVariants,
    WeightedConfig,
    draw_t_and_noise,
    output,
    weighted_gradient,
)
from dreamer.priors.base import Prior, Prompt, Views


class CSDConfig(WeightedConfig):
    name: Literal["csd"] = "csd"
    scale: float = 1.0
    #: a_u, weight of the negative-prompt branch
    negative_weight: float | Ramp = 0.0
    #: a_n, weight of the empty-prompt branch
    null_weight: float | Ramp = -1.0
    weighting: Weighting = "uniform"
    #: csd-if: t_max 0.98 -> 0.5 at step 5k
    timesteps: TimestepSchedule = TimestepSchedule(t_max=Ramp(start=5000, end=5000, v0=0.98, v1=0.5))


class CSD(ConfiguredObjective):
    cfg: CSDConfig

    def __init__(self, prior: Prior, cfg: CSDConfig) -> None:
        super().__init__(prior, cfg)
        self.variants = PromptVariants(prior)

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
        a_u, a_n = scheduled(self.cfg.negative_weight, step), scheduled(self.cfg.null_weight, step)
        with torch.no_grad():
            x_t = self.prior.add_noise(x.detach(), noise, t)
            null = self.variants.null(prompt)
            eps_y, eps_null = self.prior.predict_noise(x_t, t, null, views, ("cond", "uncond"))
            if prompt.negative and a_u != 0.0:
                eps_neg = self.prior.predict_noise(x_t, t, prompt, views, ("uncond",))[0]
            else:
                eps_neg = eps_null
            direction = self.cfg.scale * (eps_y + a_u * eps_neg + a_n * eps_null)
            g = weighted_gradient(self.prior, self.cfg, direction, t)
        return output(x, g, t)
