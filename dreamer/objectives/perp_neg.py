"""Perp-Neg (Armandpour et al. 2023) as an option of prompt handling (reference §1).

eps_hat = eps_u + s [ e_+ - sum_i f_i perp(e_i, e_+) ], with e_+ = eps(y_+) - eps_u,
e_i = eps(y_i^-) - eps_u and perp(a, b) = a - (<a, b> / |b|^2) b per sample.

The positive embedding is blended by azimuth (front<->side for |phi| < 90, side<->back beyond)
and the two other view prompts act as negatives, weighted by shifted exponentials
f(r) = a exp(-b r) + c. Overhead views get no negatives. The pairing of each weight with its
negative follows the threestudio layout as we read it; the reference does not pin it down.
Cost: 4 network passes per sample instead of 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from dreamer.config import Strict
from dreamer.priors.base import Prior, Prompt, Views


class PerpNegConfig(Strict):
    enabled: bool = False
    #: (a, b, c) of f(r) = a exp(-b r) + c
    front_side: tuple[float, float, float] = (4.0, 0.5, -2.426)
    side_front: tuple[float, float, float] = (4.0, 0.5, -2.426)
    front_side_back: tuple[float, float, float] = (1.0, 0.5, -0.606)
    side_back: tuple[float, float, float] = (1.0, 0.5, 0.967)
    #: elevation above which a view is "overhead" (no negatives)
    overhead_deg: float = 60.0


def shifted_exp(abc: tuple[float, float, float], r: Tensor) -> Tensor:
    a, b, c = abc
    return a * torch.exp(-b * r) + c


def perpendicular(a: Tensor, b: Tensor) -> Tensor:
    """The component of a perpendicular to b, per sample over all trailing dims."""
    af, bf = a.flatten(1), b.flatten(1)
    coef = (af * bf).sum(1) / (bf * bf).sum(1).clamp_min(1e-12)
    return a - coef.view(-1, *([1] * (a.ndim - 1))) * b


def perp_neg_combine(
    eps_u: Tensor, eps_pos: Tensor, eps_negs: Tensor, weights: Tensor, scale: float
) -> Tensor:
    """eps_u + s (e_+ - sum_i w_i perp(e_i, e_+)); eps_negs [N, B, ...], weights [N, B]."""
    e_pos = eps_pos - eps_u
    acc = torch.zeros_like(e_pos)
    for e_neg, w in zip(eps_negs, weights):
        acc = acc + w.view(-1, *([1] * (e_pos.ndim - 1))) * perpendicular(e_neg - eps_u, e_pos)
    return eps_u + scale * (e_pos - acc)


@dataclass
class _PerpNegPrompt(Prompt):
    """A prompt with per-sample branches ``perp_pos``, ``perp_neg0``, ``perp_neg1`` ([B, L, D])."""

    per_sample: dict[str, Tensor] | None = None

    def branch(self, branch: str, labels: Sequence) -> Tensor:  # type: ignore[override]
        if self.per_sample is not None and branch in self.per_sample:
            return self.per_sample[branch]
        return super().branch(branch, labels)  # type: ignore[arg-type]


def perp_neg_inputs(prompt: Prompt, views: Views, cfg: PerpNegConfig) -> tuple[Prompt, Tensor]:
    """The per-sample positive/negative embeddings and the weights [2, B] for a batch."""
    emb = prompt.embeddings
    az = views.cameras.azimuth_deg.detach().cpu().float()
    az = (az + 180.0) % 360.0 - 180.0
    el = views.cameras.elevation_deg.detach().cpu().float()
    pos, n0, n1, weights = [], [], [], []
    for a, e in zip(az.abs(), el):
        if e > cfg.overhead_deg:
            pos.append(emb["overhead"])
            n0.append(emb["uncond"])
            n1.append(emb["uncond"])
            weights.append(torch.zeros(2))
        elif a < 90.0:
            r = 1.0 - a / 90.0
            pos.append(r * emb["front"] + (1 - r) * emb["side"])
            n0.append(emb["side"])
            n1.append(emb["front"])
            weights.append(torch.stack([shifted_exp(cfg.front_side, r), shifted_exp(cfg.side_front, 1 - r)]))
        else:
            r = 2.0 - a / 90.0
            pos.append(r * emb["side"] + (1 - r) * emb["back"])
            n0.append(emb["front"])
            n1.append(emb["side"])
            weights.append(
                torch.stack([shifted_exp(cfg.front_side_back, r), shifted_exp(cfg.side_back, 1 - r)])
            )
    wrapped = _PerpNegPrompt(
        text=prompt.text,
        negative=prompt.negative,
        embeddings=emb,
        per_sample={"perp_pos": torch.stack(pos), "perp_neg0": torch.stack(n0), "perp_neg1": torch.stack(n1)},
    )
    return wrapped, torch.stack(weights, dim=1)


def perp_neg_noise(
    prior: Prior, x_t: Tensor, t: Tensor, prompt: Prompt, views: Views, scale: float, cfg: PerpNegConfig
) -> Tensor:
    """Perp-Neg guided eps from one 4-branch prior call."""
    wrapped, weights = perp_neg_inputs(prompt, views, cfg)
    branches = ("perp_pos", "uncond", "perp_neg0", "perp_neg1")
    eps = prior.predict_noise(x_t, t, wrapped, views, branches)  # type: ignore[arg-type]
    return perp_neg_combine(eps[1], eps[0], eps[2:], weights.to(eps), scale)
