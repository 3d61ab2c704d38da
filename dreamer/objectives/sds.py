"""SDS, Score Distillation Sampling (DreamFusion): g = w(t) (eps_hat(x_t; y, t) - eps).

eps is the very noise that made x_t, a control variate; the UNet Jacobian is dropped. CFG uses
the diffusers convention (see objectives/base.py): ``guidance_scale = 1 + omega``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from dreamer.config import Strict
from dreamer.objectives.base import (
    Objective,
    ObjectiveOutput,
    TimestepSchedule,
    Weighting,
    finalise_gradient,
    reparametrised_loss,
    timestep_weight,
)
from dreamer.priors.base import Prior, Prompt, Views


class SDSConfig(Strict):
    name: Literal["sds"] = "sds"
    #: diffusers-convention CFG scale s (DreamFusion's omega = s - 1)
    guidance_scale: float = 100.0
    weighting: Weighting = "sds"
    timesteps: TimestepSchedule = TimestepSchedule()
    #: clamp of each component of g, or None
    grad_clip: float | None = None


class SDS(Objective):
    def __init__(self, prior: Prior, cfg: SDSConfig) -> None:
        super().__init__(prior)
        self.cfg = cfg

    def guided_noise(self, x_t: Tensor, t: Tensor, prompt: Prompt, views: Views) -> Tensor:
        """eps_hat with CFG, all branches in one call; a scale of 1 skips the null branch."""
        s = self.cfg.guidance_scale
        if s == 1.0:
            return self.prior.predict_noise(x_t, t, prompt, views, ("cond",))[0]
        eps_cond, eps_uncond = self.prior.predict_noise(x_t, t, prompt, views, ("cond", "uncond"))
        return eps_uncond + s * (eps_cond - eps_uncond)

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
        batch = x.shape[0]
        t = self.cfg.timesteps.sample(batch, step, total_steps, self.prior.num_train_timesteps, generator)
        t = t.to(x.device)
        noise = torch.randn(x.shape, generator=generator).to(x)
        with torch.no_grad():
            x_t = self.prior.add_noise(x.detach(), noise, t)
            eps_hat = self.guided_noise(x_t, t, prompt, views)
            alpha, sigma = self.prior.alpha_sigma(t)
            g = finalise_gradient(
                eps_hat - noise, timestep_weight(self.cfg.weighting, alpha, sigma), self.cfg.grad_clip
            )
        return ObjectiveOutput(
            loss=reparametrised_loss(x, g),
            grad_norm=float(g.flatten(1).norm(dim=1).mean()),
            t=t,
        )
