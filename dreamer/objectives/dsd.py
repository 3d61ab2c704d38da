"""DSD, Domain Score Distillation (DreamPolish texture stage), in the reference's derived form (§3).

g = w(t) [lam_cfg (eps(y) - eps(null)) + lam_var (eps(y) - eps_psi(y, c))]: guidance from the
unconditional image domain (the CFG term) and from the variational domain (the VSD term).
VSD with scale s is (lam_cfg, lam_var) = (s - 1, 1); CSD is lam_var = 0.

The paper's weights are unconfirmed (no public code). The defaults read DSD as "the reference is
half the null-prompt teacher, half the fake score" (mu = 0.5 at the usual s = 7.5):
lam_cfg = s - 1 + mu = 7.0, lam_var = 1 - mu = 0.5. See docs/objectives.md.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from dreamer.config import Ramp, scheduled
from dreamer.objectives.vsd import VariationalConfig, VariationalObjective
from dreamer.priors.base import Prompt, Views


class DSDConfig(VariationalConfig):
    name: Literal["dsd"] = "dsd"
    cfg_weight: float | Ramp = 7.0
    variational_weight: float | Ramp = 0.5


class DSD(VariationalObjective):
    cfg: DSDConfig  # type: ignore[assignment]

    def teacher(self, x_t: Tensor, t: Tensor, prompt: Prompt, views: Views, step: int) -> Tensor:
        """[2, B, ...]: eps(y) and eps(null), one call."""
        return self.prior.predict_noise(x_t, t, prompt, views, ("cond", "uncond"))

    def direction(self, eps_hat: Tensor, fake: Tensor, step: int) -> Tensor:
        eps_y, eps_null = eps_hat
        lam_cfg, lam_var = scheduled(self.cfg.cfg_weight, step), scheduled(self.cfg.variational_weight, step)
        return lam_cfg * (eps_y - eps_null) + lam_var * (eps_y - fake[0])
