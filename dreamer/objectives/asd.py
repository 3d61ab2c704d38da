"""ASD, Asynchronous Score Distillation (ScaleDreamer): the teacher at a later timestep is the fake score.

g = w(t) [eps_hat_s(x_t; y_view, t) - eps(x_{t+dt}; y_view, t+dt)], with x_t and x_{t+dt} made
from the same eps and dt = floor(u eta (t - t_min)), u ~ U(0, 1). No LoRA, so it amortises over
prompts (reference §5). dt = 0 gives (s - 1) x CSD; s = 1 and dt = 0 gives exactly zero.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from dreamer.config import Ramp
from dreamer.objectives.base import ObjectiveOutput, TimestepSchedule
from dreamer.objectives.common import (
    ConfiguredObjective,
    PerpNegGuidedConfig,
    draw_noise,
    guided_noise,
    output,
    weighted_gradient,
)
from dreamer.priors.base import Prompt, Views


class ASDConfig(PerpNegGuidedConfig):
    name: Literal["asd"] = "asd"
    #: eta: the shift is at most this fraction of (t - t_min)
    shift_ratio: float = 0.1
    #: draw u ~ U(0, 1) per sample (else u = 1)
    random_shift: bool = True
    #: ScaleDreamer's single-prompt schedule: t_max 0.98 -> 0.5 over 25k steps
    timesteps: TimestepSchedule = TimestepSchedule(t_max=Ramp(start=0, end=25000, v0=0.98, v1=0.5))


class ASD(ConfiguredObjective):
    cfg: ASDConfig

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
        t = self.cfg.timesteps.sample(x.shape[0], step, total_steps, num_train, generator)
        u = torch.rand(x.shape[0], generator=generator) if self.cfg.random_shift else torch.ones(x.shape[0])
        t_min = int(self.cfg.timesteps.t_min * num_train)
        dt = (u * self.cfg.shift_ratio * (t - t_min).clamp_min(0)).floor().long()
        t_plus = (t + dt).clamp_max(num_train - 1)
        t, t_plus = t.to(x.device), t_plus.to(x.device)
        noise = draw_noise(x, generator)
        with torch.no_grad():
            x_t = self.prior.add_noise(x.detach(), noise, t)
            x_plus = self.prior.add_noise(x.detach(), noise, t_plus)
            eps_hat = guided_noise(
                self.prior, x_t, t, prompt, views, self.cfg.guidance_scale, self.cfg.perp_neg
            )
            eps_ref = self.prior.predict_noise(x_plus, t_plus, prompt, views, ("cond",))[0]
            g = weighted_gradient(self.prior, self.cfg, eps_hat - eps_ref, t)
        return output(x, g, t, mean_shift=float(dt.float().mean()))
