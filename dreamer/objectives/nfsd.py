"""NFSD, Noise-Free Score Distillation: CFG's score without its noise term (reference §9).

g = w(t) [delta_D + s delta_C], delta_C = eps(y) - eps(null), and the domain direction
delta_D = eps(null) for t < 200, else eps(null) - eps(y-) with y- a generic quality negative.
Note: one third-party group reports it could not replicate the paper's results.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from dreamer.config import Strict
from dreamer.objectives.base import Objective, ObjectiveOutput, TimestepSchedule, Weighting, finalise_gradient
from dreamer.objectives.common import PromptVariants, bshape, draw_noise, output, weight
from dreamer.priors.base import Prior, Prompt, Views

QUALITY_NEGATIVE = (
    "unrealistic, blurry, low quality, out of focus, ugly, low contrast, dull, dark, low-resolution, gloomy"
)


class NFSDConfig(Strict):
    name: Literal["nfsd"] = "nfsd"
    guidance_scale: float = 7.5
    #: y-, used when the run has no negative prompt of its own
    negative_prompt: str = QUALITY_NEGATIVE
    #: below this timestep (of T) the domain direction is eps(null) alone
    domain_threshold: float = 0.2
    weighting: Weighting = "sds"
    timesteps: TimestepSchedule = TimestepSchedule()
    grad_clip: float | None = None


class NFSD(Objective):
    def __init__(self, prior: Prior, cfg: NFSDConfig) -> None:
        super().__init__(prior)
        self.cfg = cfg
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
        num_train = self.prior.num_train_timesteps
        t = self.cfg.timesteps.sample(x.shape[0], step, total_steps, num_train, generator).to(x.device)
        noise = draw_noise(x, generator)
        with torch.no_grad():
            x_t = self.prior.add_noise(x.detach(), noise, t)
            null = self.variants.null(prompt)
            eps_y, eps_null = self.prior.predict_noise(x_t, t, null, views, ("cond", "uncond"))
            neg = prompt if prompt.negative else self.variants.get(prompt.text, self.cfg.negative_prompt)
            eps_neg = self.prior.predict_noise(x_t, t, neg, views, ("uncond",))[0]
            late = bshape((t >= self.cfg.domain_threshold * num_train).to(x_t.dtype), x_t)
            delta_d = eps_null - late * eps_neg
            direction = delta_d + self.cfg.guidance_scale * (eps_y - eps_null)
            alpha, sigma = self.prior.alpha_sigma(t)
            g = finalise_gradient(direction, weight(self.cfg.weighting, alpha, sigma), self.cfg.grad_clip)
        return output(x, g, t)
