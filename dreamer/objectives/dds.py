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

from dreamer.errors import DreamerError
from dreamer.objectives.base import ObjectiveOutput, TimestepSchedule, Weighting
from dreamer.objectives.common import (
    ConfiguredObjective,
    GuidedConfig,
    PromptVariants,
    draw_t_and_noise,
    guided_noise,
    output,
    weighted_gradient,
)
from dreamer.priors.base import Prior, Prompt, Views

SourceRenderer = Callable[[Views, int, int], Tensor]


class DDSConfig(GuidedConfig):
    name: Literal["dds"] = "dds"
    #: the prompt that describes the source (unedited) renders
    source_prompt: str = ""
    weighting: Weighting = "uniform"
    #: the notebook's t ~ U{50, ..., 948}
    timesteps: TimestepSchedule = TimestepSchedule(t_min=0.05, t_max=0.949)


class DDS(ConfiguredObjective):
    cfg: DDSConfig

    def __init__(self, prior: Prior, cfg: DDSConfig, source: SourceRenderer | None = None) -> None:
        super().__init__(prior, cfg)
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
        t, noise = draw_t_and_noise(self.prior, self.cfg.timesteps, x, step, total_steps, generator)
        src_prompt = self.variants.get(self.cfg.source_prompt, prompt.negative)
        with torch.no_grad():
            x_src = self.prior.encode(self.source(views, images.shape[1], images.shape[2]).to(images))
            x_t = self.prior.add_noise(x.detach(), noise, t)
            x_src_t = self.prior.add_noise(x_src, noise, t)
            s = self.cfg.guidance_scale
            eps_tgt = guided_noise(self.prior, x_t, t, prompt, views, s)
            eps_src = guided_noise(self.prior, x_src_t, t, src_prompt, views, s)
            g = weighted_gradient(self.prior, self.cfg, eps_tgt - eps_src, t)
        return output(x, g, t)
