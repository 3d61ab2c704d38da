"""CDS, Consistency Distillation Sampling (Consistent3D): SDS's random eps replaced by the teacher's
own prediction one deterministic PF-ODE step later, from a noise eps* fixed for the whole run.

x_t = alpha_t x + sigma_t eps*; one DDIM-Euler step in VE form (z = x / alpha, sigma~ = sigma / alpha)
z_t' = z_t + (sigma~_t' - sigma~_t) eps_hat_t; g = w (eps_hat_t - eps_hat_t') (reference §8).
It vanishes where x is self-consistent under the teacher's ODE. eps* is kept in the checkpoint.
t' anneals from 0.7 T to 0.1 T with sqrt progress; t = t' + U[gap, gap + perturb).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from dreamer.config import Ramp, Strict, scheduled
from dreamer.objectives.base import ObjectiveOutput, Weighting, finalise_gradient
from dreamer.objectives.common import ConfiguredObjective, bshape, guided_noise, output, weight
from dreamer.priors.base import Prior, Prompt, Views


class CDSConfig(Strict):
    name: Literal["cds"] = "cds"
    #: diffusers-convention scale (Consistent3D's DreamFusion-form 100 -> 50 over 3k steps)
    guidance_scale: float | Ramp = Ramp(start=0, end=3000, v0=101.0, v1=51.0)
    #: t' = start - (start - end) sqrt(step / total_steps), fractions of T
    t_prime_start: float = 0.7
    t_prime_end: float = 0.1
    #: t - t' ~ U[gap, gap + perturb), fractions of T
    gap: float = 0.1
    perturb: float = 0.2
    weighting: Weighting = "uniform"
    grad_clip: float | Ramp | None = Ramp(start=0, end=3000, v0=2.0, v1=8.0)


class CDS(ConfiguredObjective):
    cfg: CDSConfig

    def __init__(self, prior: Prior, cfg: CDSConfig) -> None:
        super().__init__(prior, cfg)
        self.shared_noise: Tensor | None = None

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
        b, num_train = x.shape[0], self.prior.num_train_timesteps
        if self.shared_noise is None or self.shared_noise.shape[1:] != x.shape[1:]:
            self.shared_noise = torch.randn((1, *x.shape[1:]), generator=generator)
        eps_star = self.shared_noise.to(x).expand_as(x)
        frac = (step / max(total_steps, 1)) ** 0.5
        t_prime_f = self.cfg.t_prime_start - (self.cfg.t_prime_start - self.cfg.t_prime_end) * frac
        t_prime = torch.full((b,), int(t_prime_f * num_train), dtype=torch.long)
        offset = self.cfg.gap + self.cfg.perturb * torch.rand(b, generator=generator)
        t = (t_prime + (offset * num_train).long()).clamp_max(num_train - 1)
        t, t_prime = t.to(x.device), t_prime.to(x.device)
        scale = scheduled(self.cfg.guidance_scale, step)
        with torch.no_grad():
            x_t = self.prior.add_noise(x.detach(), eps_star, t)
            eps_t = guided_noise(self.prior, x_t, t, prompt, views, scale)
            a_t, s_t = self.prior.alpha_sigma(t)
            a_p, s_p = self.prior.alpha_sigma(t_prime)
            z_prime = x_t / bshape(a_t, x_t) + bshape(s_p / a_p - s_t / a_t, x_t) * eps_t
            x_prime = bshape(a_p, x_t) * z_prime
            eps_prime = guided_noise(self.prior, x_prime, t_prime, prompt, views, scale)
            clip = None if self.cfg.grad_clip is None else scheduled(self.cfg.grad_clip, step)
            g = finalise_gradient(eps_t - eps_prime, weight(self.cfg.weighting, a_t, s_t), clip)
        return output(x, g, t, t_prime=float(t_prime.float().mean()))

    def state_dict(self) -> dict:
        return {} if self.shared_noise is None else {"shared_noise": self.shared_noise.cpu()}

    def load_state_dict(self, state: dict) -> None:
        self.shared_noise = state.get("shared_noise")
