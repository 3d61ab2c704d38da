"""Plumbing shared by the score-distillation family beside SDS (reference §0, §13).

Every rule computes ``g = w(t) (eps_target - eps_ref)`` under ``no_grad`` and hands it to
``reparametrised_loss``; what differs is how the two eps are made. This module holds the pieces
they share so each objective module is only its formula: the config fields every rule repeats,
the t and noise draws, guided eps (with the optional Perp-Neg), the weighted and clipped gradient,
derived prompts (the null and a fixed negative) and the output record.
"""

from __future__ import annotations

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
from dreamer.objectives.perp_neg import PerpNegConfig, perp_neg_noise
from dreamer.priors.base import Prior, Prompt, Views


class DistillConfig(Strict):
    """The t schedule and the clamp of g, as every rule with a t schedule has them.

    Subclasses add ``name`` and their own fields, and override a default where the rule's differs;
    the field names and defaults are the preset keys, so they stay as they are.
    """

    timesteps: TimestepSchedule = TimestepSchedule()
    #: clamp of each component of g, or None
    grad_clip: float | None = None


class WeightedConfig(DistillConfig):
    """... and the timestep weighting w(t)."""

    weighting: Weighting = "sds"


class GuidedConfig(WeightedConfig):
    """... and the teacher's classifier-free guidance scale."""

    #: diffusers-convention CFG scale s of the teacher (DreamFusion's omega = s - 1)
    guidance_scale: float = 7.5


class PerpNegGuidedConfig(GuidedConfig):
    """... and the optional Perp-Neg of the guided teacher."""

    perp_neg: PerpNegConfig = PerpNegConfig()


class ConfiguredObjective(Objective):
    """An objective that keeps its config as ``self.cfg``."""

    def __init__(self, prior: Prior, cfg: Strict) -> None:
        super().__init__(prior)
        self.cfg = cfg


def draw_noise(x: Tensor, generator: torch.Generator) -> Tensor:
    """eps ~ N(0, I) of x's shape, drawn on the CPU generator (device independent)."""
    return torch.randn(x.shape, generator=generator).to(x)


def draw_t_and_noise(
    prior: Prior, schedule: TimestepSchedule, x: Tensor, step: int, total_steps: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """t [B] from ``schedule`` (on x's device), then eps ~ N(0, I) of x's shape, in that order."""
    t = schedule.sample(x.shape[0], step, total_steps, prior.num_train_timesteps, generator)
    return t.to(x.device), draw_noise(x, generator)


def bshape(v: Tensor, like: Tensor) -> Tensor:
    """[B] -> [B, 1, ...] broadcastable against ``like``."""
    return v.view(-1, *([1] * (like.ndim - 1)))


def guided_noise(
    prior: Prior,
    x_t: Tensor,
    t: Tensor,
    prompt: Prompt,
    views: Views,
    scale: float,
    perp_neg: PerpNegConfig | None = None,
) -> Tensor:
    """eps_hat_s = eps(uncond) + s (eps(cond) - eps(uncond)), diffusers convention, one prior call.

    ``scale == 1`` skips the null branch. With ``perp_neg`` enabled, the cond branch is replaced
    by Perp-Neg's azimuth-blended prompt and its perpendicular negatives (§1).
    """
    if perp_neg is not None and perp_neg.enabled and prompt.embeddings:
        return perp_neg_noise(prior, x_t, t, prompt, views, scale, perp_neg)
    if scale == 1.0:
        return prior.predict_noise(x_t, t, prompt, views, ("cond",))[0]
    eps_cond, eps_uncond = prior.predict_noise(x_t, t, prompt, views, ("cond", "uncond"))
    return eps_uncond + scale * (eps_cond - eps_uncond)


def weight(kind: Weighting | str, alpha: Tensor, sigma: Tensor) -> Tensor:
    """w(t) per sample; beside base.py's kinds: ``alpha`` (BSD) and ``sigma_ve`` = sigma/alpha (ISM)."""
    if kind == "alpha":
        return alpha
    if kind == "sigma_ve":
        return sigma / alpha
    return timestep_weight(kind, alpha, sigma)  # type: ignore[arg-type]


def weighted_gradient(prior: Prior, cfg: WeightedConfig, direction: Tensor, t: Tensor) -> Tensor:
    """``finalise_gradient`` of ``direction`` with w(t) of ``cfg.weighting`` and ``cfg.grad_clip``."""
    alpha, sigma = prior.alpha_sigma(t)
    return finalise_gradient(direction, weight(cfg.weighting, alpha, sigma), cfg.grad_clip)


class PromptVariants:
    """Prompts derived from the run's prompt (the bare null, a fixed negative), embedded once.

    The prior caches embeddings on disk; this keeps the ``Prompt`` objects themselves.
    """

    def __init__(self, prior: Prior) -> None:
        self.prior = prior
        self._cache: dict[tuple[str, str], Prompt] = {}

    def get(self, text: str, negative: str) -> Prompt:
        key = (text, negative)
        if key not in self._cache:
            self._cache[key] = self.prior.encode_prompt(text, negative)
        return self._cache[key]

    def null(self, prompt: Prompt) -> Prompt:
        """The same prompt whose ``uncond`` branch is the empty text (not the negative)."""
        return prompt if not prompt.negative else self.get(prompt.text, "")


def output(x: Tensor, g: Tensor, t: Tensor, **extras: float) -> ObjectiveOutput:
    """Loss carrying g, with ``grad_norm`` = mean per-sample norm of g."""
    return ObjectiveOutput(
        loss=reparametrised_loss(x, g),
        grad_norm=float(g.flatten(1).norm(dim=1).mean()),
        t=t,
        extras={k: float(v) for k, v in extras.items()},
    )
