"""BSD, Balanced Score Distillation (PlacidDreamer): a per-sample Pareto (MGDA) mix of two guidances.

g_c = lam (eps(y) - eps(null)) (classifier), g_d (smoothing) and
a* = clip(<g_d - g_c, g_d> / |g_d - g_c|^2, 0, 1), the min-norm point of the segment [g_c, g_d];
g = w(t) [a* g_c + (1 - a*) g_d] (reference §6). Variants:
``sd_utils`` (the 3-D code): lam = 15, g_d = eps(null), w = alpha;
``auto``: lam = 1, g_d = 1.25 (eps(null) - eps), w = |eps(null) - eps| sigma / 50.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from dreamer.objectives.base import ObjectiveOutput, finalise_gradient
from dreamer.objectives.common import ConfiguredObjective, DistillConfig, bshape, draw_t_and_noise, output, weight
from dreamer.priors.base import Prompt, Views


class BSDConfig(DistillConfig):
    name: Literal["bsd"] = "bsd"
    variant: Literal["sd_utils", "auto"] = "sd_utils"
    #: lam, the classifier weight (PlacidDreamer's README: 18 on the CLI, 15 in the code read)
    classifier_weight: float = 15.0
    #: multiplier of the smoothing direction (1 in sd_utils, 1.25 in auto, 0.018 in the 2-D demo)
    smoothing_weight: float = 1.0


def pareto_mix(g_c: Tensor, g_d: Tensor) -> tuple[Tensor, Tensor]:
    """(a* [B], a* g_c + (1 - a*) g_d): the minimum-norm point on the segment, per sample."""
    diff = (g_d - g_c).flatten(1)
    a = ((diff * g_d.flatten(1)).sum(1) / (diff * diff).sum(1).clamp_min(1e-12)).clamp(0.0, 1.0)
    return a, bshape(a, g_c) * g_c + bshape(1.0 - a, g_d) * g_d


class BSD(ConfiguredObjective):
    cfg: BSDConfig

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
            eps_y, eps_null = self.prior.predict_noise(x_t, t, prompt, views, ("cond", "uncond"))
            alpha, sigma = self.prior.alpha_sigma(t)
            g_c = self.cfg.classifier_weight * (eps_y - eps_null)
            if self.cfg.variant == "sd_utils":
                g_d = self.cfg.smoothing_weight * eps_null
                w = weight("alpha", alpha, sigma)
            else:
                g_d = self.cfg.smoothing_weight * (eps_null - noise)
                w = (eps_null - noise).flatten(1).norm(dim=1) * sigma / 50.0
            a, mixed = pareto_mix(g_c, g_d)
            g = finalise_gradient(mixed, w, self.cfg.grad_clip)
        return output(x, g, t, pareto_weight=float(a.mean()))
