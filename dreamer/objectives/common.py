"""Plumbing shared by the score-distillation family beside SDS (reference §0, §13).

Every rule computes ``g = w(t) (eps_target - eps_ref)`` under ``no_grad`` and hands it to
``reparametrised_loss``; what differs is how the two eps are made. This module holds the pieces
they share so each objective module is only its formula: noise drawing, guided eps (with the
optional Perp-Neg), derived prompts (the null and a fixed negative) and the output record.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dreamer.objectives.base import ObjectiveOutput, Weighting, reparametrised_loss, timestep_weight
from dreamer.objectives.perp_neg import PerpNegConfig, perp_neg_noise
from dreamer.priors.base import Prior, Prompt, Views


def draw_noise(x: Tensor, generator: torch.Generator) -> Tensor:
    """eps ~ N(0, I) of x's shape, drawn on the CPU generator (device independent)."""
    return torch.randn(x.shape, generator=generator).to(x)


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
