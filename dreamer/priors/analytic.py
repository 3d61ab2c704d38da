"""Analytic priors: a Gaussian and an isotropic Gaussian mixture with exact noised scores.

They let the score-distillation family be *proven* rather than eyeballed: under the VP forward
process ``x_t = alpha x + sigma eps`` a Gaussian N(mu, S) stays Gaussian,
N(alpha mu, alpha^2 S + sigma^2 I), and a mixture stays a mixture, so
``eps*(x_t, t) = -sigma grad log p_t(x_t)`` is known in closed form (reference §15).

The prior's space is the particle itself: ``encode``/``decode`` are the identity on any
``[B, ...]`` tensor (a "renderer" that returns its parameters). Scores act on ``x.flatten(1)``.

Branches:
    ``cond`` and ``plain``: the target p;
    ``uncond``: a broader Gaussian (p's mean, p's covariance + ``uncond_spread^2 I``), so classifier-free
    guidance with s > 1 sharpens p the way a text condition sharpens an image prior.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from dreamer.priors.base import Branch, Prior, Prompt, Views


def ddpm_linear_alphas_cumprod(
    num_train: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
) -> Tensor:
    """DDPM's linear schedule, the one the §15 toy numbers were made with."""
    betas = torch.linspace(beta_start, beta_end, num_train, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, 0).float()


class _Analytic(Prior):
    uses_text = False

    def __init__(self, dim: int, uncond_spread: float, name: str) -> None:
        self.name = name
        self.sample_size = dim
        self.dim = dim
        self.uncond_spread = uncond_spread
        self._ac = ddpm_linear_alphas_cumprod()

    @property
    def alphas_cumprod(self) -> Tensor:
        return self._ac

    def encode(self, images: Tensor) -> Tensor:
        """Identity: the particle is its own render (gradients pass unchanged)."""
        return images

    def decode(self, x: Tensor) -> Tensor:
        return x

    def encode_prompt(self, text: str, negative: str = "") -> Prompt:
        return Prompt(text=text, negative=negative)

    # -- to be provided by subclasses: mean and covariance of p (for the uncond branch) and the score
    def moments(self) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def log_prob_t(self, x_t: Tensor, t: Tensor) -> Tensor:
        """log p_t(x_t) [B] of the target's noised density (tests compare autograd of it)."""
        raise NotImplementedError

    def score_t(self, x_t: Tensor, t: Tensor) -> Tensor:
        """grad log p_t(x_t) [B, D] of the target."""
        raise NotImplementedError

    def _uncond_score(self, x: Tensor, t: Tensor) -> Tensor:
        mean, cov = self.moments()
        cov = cov + self.uncond_spread**2 * torch.eye(self.dim)
        return gaussian_score_t(x, t, mean, cov, self.alphas_cumprod)

    def predict_noise(
        self,
        x_t: Tensor,
        t: Tensor,
        prompt: Prompt,
        views: Views | None,
        branches: Sequence[Branch] = ("cond", "uncond"),
    ) -> Tensor:
        """Exact eps = -sigma grad log p_t for each branch: [K, *x_t.shape] float32."""
        x = x_t.detach().flatten(1).float()
        t = t.long().reshape(-1).expand(x.shape[0])
        sigma = (1.0 - self.alphas_cumprod[t]).sqrt().unsqueeze(1)
        out = []
        for branch in branches:
            score = self._uncond_score(x, t) if branch == "uncond" else self.score_t(x, t)
            out.append((-sigma * score).reshape(x_t.shape))
        return torch.stack(out)


def gaussian_score_t(x: Tensor, t: Tensor, mean: Tensor, cov: Tensor, alphas_cumprod: Tensor) -> Tensor:
    """grad log of N(alpha mean, alpha^2 cov + sigma^2 I) at x [B, D], per-sample t [B]."""
    ac = alphas_cumprod[t].view(-1, 1, 1)
    eye = torch.eye(x.shape[1], dtype=x.dtype)
    cov_t = ac * cov + (1.0 - ac) * eye
    diff = x - ac.view(-1, 1).sqrt() * mean
    return -torch.linalg.solve(cov_t, diff.unsqueeze(-1)).squeeze(-1)


def mixture_score_t(
    x: Tensor, t: Tensor, weights: Tensor, means: Tensor, stds: Tensor, alphas_cumprod: Tensor
) -> tuple[Tensor, Tensor]:
    """(log p_t [B], grad log p_t [B, D]) of sum_k w_k N(alpha m_k, (alpha^2 s_k^2 + sigma^2) I)."""
    ac = alphas_cumprod[t].view(-1, 1)  # [B, 1]
    var = ac * stds.view(1, -1) ** 2 + (1.0 - ac)  # [B, K]
    diff = x.unsqueeze(1) - ac.sqrt().unsqueeze(-1) * means.unsqueeze(0)  # [B, K, D]
    d = x.shape[1]
    logc = weights.log().view(1, -1) - 0.5 * (diff**2).sum(-1) / var - 0.5 * d * torch.log(2 * torch.pi * var)
    logp = torch.logsumexp(logc, dim=1)
    resp = torch.softmax(logc, dim=1)  # [B, K]
    score = -(resp.unsqueeze(-1) * diff / var.unsqueeze(-1)).sum(1)
    return logp, score


class GaussianPrior(_Analytic):
    """p = N(mean, cov) in D dimensions."""

    def __init__(self, mean: Tensor, cov: Tensor, uncond_spread: float = 1.0) -> None:
        super().__init__(mean.numel(), uncond_spread, "analytic:gaussian")
        self.mean = mean.float()
        self.cov = cov.float()

    def moments(self) -> tuple[Tensor, Tensor]:
        return self.mean, self.cov

    def score_t(self, x_t: Tensor, t: Tensor) -> Tensor:
        return gaussian_score_t(x_t.flatten(1), t, self.mean, self.cov, self.alphas_cumprod)

    def log_prob_t(self, x_t: Tensor, t: Tensor) -> Tensor:
        ac = self.alphas_cumprod[t].view(-1, 1, 1)
        cov_t = ac * self.cov + (1.0 - ac) * torch.eye(self.dim)
        dist = torch.distributions.MultivariateNormal(ac.view(-1, 1).sqrt() * self.mean, cov_t)
        return dist.log_prob(x_t.flatten(1))

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        chol = torch.linalg.cholesky(self.cov)
        return self.mean + torch.randn(n, self.dim, generator=generator) @ chol.T


class MixturePrior(_Analytic):
    """p = sum_k w_k N(means_k, stds_k^2 I): the mode-coverage test bed."""

    def __init__(
        self, weights: Tensor, means: Tensor, stds: Tensor | float, uncond_spread: float = 1.0
    ) -> None:
        super().__init__(means.shape[1], uncond_spread, "analytic:mixture")
        self.weights = (weights / weights.sum()).float()
        self.means = means.float()
        self.stds = torch.as_tensor(stds, dtype=torch.float32).expand(means.shape[0]).clone()

    def moments(self) -> tuple[Tensor, Tensor]:
        w = self.weights.view(-1, 1)
        mean = (w * self.means).sum(0)
        centred = self.means - mean
        cov = (w * centred).T @ centred + torch.diag((w.view(-1) * self.stds**2).sum().expand(self.dim))
        return mean, cov

    def score_t(self, x_t: Tensor, t: Tensor) -> Tensor:
        return mixture_score_t(x_t.flatten(1), t, self.weights, self.means, self.stds, self.alphas_cumprod)[1]

    def log_prob_t(self, x_t: Tensor, t: Tensor) -> Tensor:
        return mixture_score_t(x_t.flatten(1), t, self.weights, self.means, self.stds, self.alphas_cumprod)[0]

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        return self.means[k] + self.stds[k].unsqueeze(1) * torch.randn(n, self.dim, generator=generator)
