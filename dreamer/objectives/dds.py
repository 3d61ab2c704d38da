"""DDS, Delta Denoising Score (Hertz et al.; ED-NeRF in 3-D): editing by differencing two SDS terms.

g = w [eps_hat_s(z_t^tgt; y_tgt, t) - eps_hat_s(z_t^src; y_src, t)] with the same t and eps: the
source term cancels SDS's noisy, biased component, so only the edit direction remains
(reference §10). The source renders come from ``set_source``: a callable that renders the frozen
original for the same views (ED-NeRF's reading). Identical source and target give exactly zero.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from dreamer.config import Strict
from dreamer.errors import DreamerError
from dreamer.objectives.base import Objective, ObjectiveOutput, TimestepSchedule, Weighting, finalise_gradient
from dreamer.objectives.common import PromptVariants, draw_noise, guided_noise, output, weight
from dreamer.priors.base import Prior, Prompt, Views

SourceRenderer = Callable[[Views, int, int], Tensor]


class DDSConfig(Strict):
    name: Literal["dds"] = "dds"
    #: the prompt that describes the source (unedited) renders
    source_prompt: str = ""
    guidance_scale: float = 7.5
    weighting: Weighting = "uniform"
    #: the notebook's t ~ U{50, ..., 948}
    timesteps: TimestepSchedule = TimestepSchedule(t_min=0.05, t_max=0.949)
    grad_clip: float | None = None


class DDS(Objective):
    def __init__(self, prior: Prior, cfg: DDSConfig, source: SourceRenderer | None = None) -> None:
        super().__init__(prior)
        self.cfg = cfg
        self.source = source
        self.variants = PromptVariants(prior)

    def set_source(self, source: SourceRenderer) -> None:
        """``source(views, H, W)`` -> [B, H, W, 3] renders of the original scene, same cameras."""
        self.source = source

    def __call__(
        self,
        images: Tensor,
        views: Views,
        prompt: Prompt,
        step: int,
        total_steps: int,
        generator: torch.Generator,
    ) -> ObjectiveOutput:
        if self.source is None:
            raise DreamerError("DDS needs the source renders: call set_source() first")
        x = self.prior.encode(images)
        t = self.cfg.timesteps.sample(
            x.shape[0], step, total_steps, self.prior.num_train_timesteps, generator
        )
        t = t.to(x.device)
        noise = draw_noise(x, generator)
        src_prompt = self.variants.get(self.cfg.source_prompt, prompt.negative)
        with torch.no_grad():
            x_src = self.prior.encode(self.source(views, images.shape[1], images.shape[2]).to(images))
            x_t = self.prior.add_noise(x.detach(), noise, t)
            x_src_t = self.prior.add_noise(x_src, noise, t)
            s = self.cfg.guidance_scale
            eps_tgt = guided_noise(self.prior, x_t, t, prompt, views, s)
            eps_src = guided_noise(self.prior, x_src_t, t, src_prompt, views, s)
            alpha, sigma = self.prior.alpha_sigma(t)
            g = finalise_gradient(
                eps_tgt - eps_src, weight(self.cfg.weighting, alpha, sigma), self.cfg.grad_clip
            )
        return output(x, g, t)
