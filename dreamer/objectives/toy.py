"""Glue that runs the objectives unchanged on the analytic priors (reference §15).

The "renderer" is the identity: a particle (or a generator's output) is its own render, and the
"camera" of a sample is its latent seed c, packed into the 16 entries of ``Cameras.c2w`` so that
camera-conditioned fake scores see it exactly like a real camera. Fake scores here are ideal
(infinitely fast psi): the exact score of the generator's own distribution, or a KDE of the
particles.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from dreamer.cameras import Cameras
from dreamer.objectives.base import Objective
from dreamer.objectives.lora import FakeBranch, FakeScore, camera_condition
from dreamer.priors.analytic import MixturePrior, gaussian_score_t, mixture_score_t
from dreamer.priors.base import Prior, Prompt, Views


def seed_views(seeds: Tensor) -> Views:
    """Views whose cameras carry the seeds [B, D <= 16] in their flattened c2w."""
    b, d = seeds.shape
    if d > 16:
        raise ValueError(f"a seed of {d} dims does not fit a 4x4 camera")
    c2w = torch.zeros(b, 16)
    c2w[:, :d] = seeds.detach().float()
    zeros = torch.zeros(b)
    cams = Cameras(c2w.view(b, 4, 4), zeros + 40.0, zeros, zeros, zeros + 1.0)
    return Views(cams, torch.zeros(b, 3))


def constant_views(batch: int) -> Views:
    """Views with one identical camera for every sample (particles have no view)."""
    eye = torch.eye(4).flatten()[None].expand(batch, 16)
    return seed_views(eye.clone())


class ParticleKDE(FakeScore):
    """Exact noised score of a Gaussian KDE of the current particles (bandwidth h); camera-free.

    The particles are the batch the objective last ``observe``d (all particles in one batch).
    """

    def __init__(self, bandwidth: float, prior: Prior) -> None:
        self.bandwidth = bandwidth
        self.prior = prior
        self.points: Tensor | None = None

    def observe(self, x: Tensor) -> None:
        self.points = x.detach()

    def noise(
        self, x_t: Tensor, t: Tensor, prompt: Prompt, views: Views, branches: Sequence[FakeBranch]
    ) -> Tensor:
        if self.points is None:
            raise RuntimeError("ParticleKDE.noise before observe()")
        pts = self.points.flatten(1)
        n = pts.shape[0]
        x = x_t.flatten(1)
        _, score = mixture_score_t(
            x,
            t.long(),
            torch.full((n,), 1.0 / n),
            pts,
            torch.full((n,), self.bandwidth),
            self.prior.alphas_cumprod,
        )
        sigma = (1.0 - self.prior.alphas_cumprod[t.long()]).sqrt().unsqueeze(1)
        eps = (-sigma * score).reshape(x_t.shape)
        return eps.unsqueeze(0).expand(len(branches), *eps.shape)


class GaussianGenerator(nn.Module):
    """x = mu + L c with c ~ N(0, I): a parametric q = N(mu, L L^T) whose camera is c."""

    def __init__(self, dim: int, init_scale: float = 0.5) -> None:
        super().__init__()
        self.mu = nn.Parameter(torch.zeros(dim))
        self.L = nn.Parameter(init_scale * torch.eye(dim))

    def forward(self, seeds: Tensor) -> Tensor:
        return self.mu + seeds @ self.L.T

    def covariance(self) -> Tensor:
        return (self.L @ self.L.T).detach()


class GeneratorScore(FakeScore):
    """Exact fake score of a ``GaussianGenerator``.

    ``camera``: q(x | c) is the Dirac at mu + L c, noised N(alpha x_c, sigma^2 I), so eps is the
    very noise that made x_t; ``nocamera``: q = N(mu, L L^T), noised exactly.
    """

    def __init__(self, generator: GaussianGenerator, prior: Prior) -> None:
        self.gen = generator
        self.prior = prior

    @torch.no_grad()
    def noise(
        self, x_t: Tensor, t: Tensor, prompt: Prompt, views: Views, branches: Sequence[FakeBranch]
    ) -> Tensor:
        t = t.long()
        d = x_t.flatten(1).shape[1]
        alpha, sigma = self.prior.alpha_sigma(t)
        out = []
        for branch in branches:
            if branch == "camera":
                x_c = self.gen(camera_condition(views)[:, :d])
                eps = (x_t.flatten(1) - alpha[:, None] * x_c) / sigma[:, None]
            else:
                cov = self.gen.covariance() + 1e-6 * torch.eye(d)
                score = gaussian_score_t(
                    x_t.flatten(1), t, self.gen.mu.detach(), cov, self.prior.alphas_cumprod
                )
                eps = -sigma[:, None] * score
            out.append(eps.reshape(x_t.shape))
        return torch.stack(out)


def run_particles(
    objective: Objective, particles: Tensor, steps: int, lr: float, generator: torch.Generator
) -> Tensor:
    """Plain SGD on the particles with step lr * g (the loss gradient is g / B, so scale by B)."""
    prompt = objective.prior.encode_prompt("toy")
    views = constant_views(particles.shape[0])
    particles = particles.clone().requires_grad_(True)
    for step in range(steps):
        out = objective(particles, views, prompt, step, steps, generator)
        (grad,) = torch.autograd.grad(out.loss, particles)
        with torch.no_grad():
            particles -= lr * particles.shape[0] * grad
    return particles.detach()


def run_generator(
    objective: Objective,
    gen: GaussianGenerator,
    steps: int,
    batch: int,
    lr: float,
    generator: torch.Generator,
) -> GaussianGenerator:
    """Adam on (mu, L) with fresh seeds c ~ N(0, I) as cameras each step."""
    opt = torch.optim.Adam(gen.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    prompt = objective.prior.encode_prompt("toy")
    dim = gen.mu.numel()
    for step in range(steps):
        seeds = torch.randn(batch, dim, generator=generator)
        out = objective(gen(seeds), seed_views(seeds), prompt, step, steps, generator)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        sched.step()
    return gen


def mode_stats(particles: Tensor, prior: MixturePrior) -> dict:
    """Occupancy per mode (nearest mean), within-mode std (per axis, pooled) and worst distance."""
    pts = particles.flatten(1)
    dist = torch.cdist(pts, prior.means)
    nearest = dist.argmin(1)
    occupancy, spread = [], []
    for k in range(prior.means.shape[0]):
        members = pts[nearest == k]
        occupancy.append(members.shape[0] / pts.shape[0])
        spread.append(float(members.std(0).mean()) if members.shape[0] > 1 else 0.0)
    return {
        "occupancy": occupancy,
        "target_occupancy": prior.weights.tolist(),
        "occupancy_error": max(abs(o - w) for o, w in zip(occupancy, prior.weights.tolist())),
        "within_std": spread,
        "target_std": prior.stds.tolist(),
        "max_distance_to_mode": float(dist.min(1).values.max()),
    }


def covariance_error(cov: Tensor, target: Tensor) -> float:
    """Relative Frobenius error ||cov - target|| / ||target||."""
    return float(torch.linalg.norm(cov - target) / torch.linalg.norm(target))
