"""NFSD, Noise-Free Score Distillation: CFG's score without its noise term (reference §9).

g = w(t) [delta_D + s delta_C], delta_C = eps(y) - eps(null), and the domain direction
delta_D = eps(null) for t < 200, else eps(null) - eps(y-) with y- a generic quality negative.
Note: one third-party group reports it could not replicate the paper's results.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from dreamer.objectives.base import ObjectiveOutput
from dreamer.objectives.common import (
    ConfiguredObjective,
    GuidedConfig,
    PromptVariants,
    bshape,
    draw_t_and_noise,
    output,
    weighted_gradient,
)
from dreamer.priors.base import Prior, Prompt, Views

QUALITY_NEGATIVE = (
    "unrealistic, blurry, low quality, out of focus, ugly, low contrast, dull, dark, low-resolution, gloomy"
)


class NFSDConfig(GuidedConfig):
    name: Literal["nfsd"] = "nfsd"
    #: y-, used when the run has no negative prompt of its own
    negative_prompt: str = QUALITY_NEGATIVE
    #: below this timestep (of T) the domain direction is eps(null) alone
    domain_threshold: float = 0.2


class NFSD(ConfiguredObjective):
    cfg: NFSDConfig

    def __init__(self, prior: Prior, cfg: NFSDConfig) -> None:
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
        with torch.no_grad():
            x_t = self.prior.add_noise(x.detach(), noise, t)
            null = self.variants.null(prompt)
            eps_y, eps_null = self.prior.predict_noise(x_t, t, null, views, ("cond", "uncond"))
            neg = prompt if prompt.negative else self.variants.get(prompt.text, self.cfg.negative_prompt)
            eps_neg = self.prior.predict_noise(x_t, t, neg, views, ("uncond",))[0]
            late = bshape((t >= self.cfg.domain_threshold * self.prior.num_train_timesteps).to(x_t.dtype), x_t)
            delta_d = eps_null - late * eps_neg
            direction = delta_d + self.cfg.guidance_scale * (eps_y - eps_null)
            g = weighted_gradient(self.prior, self.cfg, direction, t)
        return output(x, g, t)
