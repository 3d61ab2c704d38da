"""Adaptive density control for 3D Gaussians (3DGS's clone / split / prune), with the optimiser
state kept in step: Adam's moments follow their Gaussians, new Gaussians start from zero.
"""

from __future__ import annotations

import torch
from pydantic import model_validator
from torch import Tensor, nn

from dreamer.config import Strict
from dreamer.representations.gaussians import PARAM_NAMES, Gaussians
from renderers.gaussians.torch_backend import quat_to_rotmat


class DensifyConfig(Strict):
    start: int = 100
    stop: int = 1000
    every: int = 100
    #: mean screen-space gradient (NDC units, as 3DGS) above which a Gaussian grows
    grad_threshold: float = 0.0002
    #: Gaussians smaller than this (fraction of the scene extent) are cloned, larger ones split
    clone_scale: float = 0.01
    min_opacity: float = 0.01
    #: prune Gaussians larger than this fraction of the scene extent
    max_scale: float = 0.2
    max_gaussians: int = 50_000
    #: reset opacities to this value every ``opacity_reset_every`` steps (0 = never)
    opacity_reset_every: int = 0
    opacity_reset_value: float = 0.05

    @model_validator(mode="after")
    def _check(self) -> DensifyConfig:
        if self.every <= 0 or self.stop < self.start:
            raise ValueError("densify needs every > 0 and stop >= start")
        return self


class Densifier:
    """Accumulates screen-space gradients after each backward pass and edits the Gaussians."""

    def __init__(self, cfg: DensifyConfig, gaussians: Gaussians) -> None:
        self.cfg = cfg
        self._reset_stats(len(gaussians), gaussians.means.device)

    def _reset_stats(self, n: int, device: torch.device) -> None:
        self.grad_sum = torch.zeros(n, device=device)
        self.count = torch.zeros(n, device=device)

    def accumulate(self, gaussians: Gaussians, height: int, width: int) -> None:
        """Call after ``backward()``: reads the 2D-mean gradients of the last render."""
        means2d = getattr(gaussians, "last_means2d", None)
        if means2d is None or means2d.grad is None:
            return
        grad = means2d.grad.detach().clone()  # [C, N, 2] in pixels
        cams = grad.shape[0]
        grad[..., 0] *= width * 0.5 * cams
        grad[..., 1] *= height * 0.5 * cams
        visible = gaussians.last_radii > 0
        norms = grad.norm(dim=-1) * visible
        self.grad_sum += norms.sum(0)
        self.count += visible.sum(0)

    def step(
        self, step: int, gaussians: Gaussians, optimizer: torch.optim.Optimizer, generator: torch.Generator
    ) -> bool:
        """Densify and prune when the schedule says so; True if the Gaussians changed."""
        cfg = self.cfg
        changed = False
        if cfg.start <= step < cfg.stop and step % cfg.every == 0 and step > 0:
            self._grow_and_prune(gaussians, optimizer, generator)
            changed = True
        if cfg.opacity_reset_every and step > 0 and step % cfg.opacity_reset_every == 0 and step < cfg.stop:
            with torch.no_grad():
                capped = torch.minimum(gaussians.opacity_logits, torch.logit(torch.tensor(cfg.opacity_reset_value)))
                gaussians.opacity_logits.copy_(capped)
            changed = True
        return changed

    def _grow_and_prune(self, g: Gaussians, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> None:
        cfg = self.cfg
        extent = g.extent()
        with torch.no_grad():
            avg = self.grad_sum / self.count.clamp_min(1)
            hot = avg > cfg.grad_threshold
            room = max(cfg.max_gaussians - len(g), 0)
            if int(hot.sum()) > room:  # keep the hottest that fit
                order = torch.argsort(avg, descending=True)
                hot = torch.zeros_like(hot)
                hot[order[:room]] = True
            big = g.scales.max(-1).values > cfg.clone_scale * extent
            clone, split = hot & ~big, hot & big

            new_rows = {name: getattr(g, name)[clone] for name in PARAM_NAMES}
            # a split Gaussian becomes two samples of itself, 1.6x smaller (3DGS)
            if bool(split.any()):
                idx = split.nonzero().squeeze(1).repeat(2)
                cov_scale = g.scales[idx]
                offsets = torch.randn(idx.shape[0], 3, generator=generator).to(cov_scale) * cov_scale
                rot = quat_to_rotmat(g.normalised_quats[idx])  # offsets in the Gaussian's own frame
                split_rows = {
                    "means": g.means[idx] + (rot @ offsets[..., None]).squeeze(-1),
                    "log_scales": g.log_scales[idx] - torch.log(torch.tensor(1.6)),
                    "quats": g.quats[idx],
                    "opacity_logits": g.opacity_logits[idx],
                    "color_logits": g.color_logits[idx],
                }
                new_rows = {k: torch.cat([new_rows[k], split_rows[k]]) for k in PARAM_NAMES}

            keep = ~split
            keep &= g.opacities > cfg.min_opacity
            keep &= g.scales.max(-1).values < cfg.max_scale * extent
            if not bool(keep.any()):
                keep[torch.argmax(g.opacities)] = True
            n_new = new_rows["means"].shape[0]
        _edit_parameters(g, optimizer, keep, new_rows)
        self._reset_stats(int(keep.sum()) + n_new, g.means.device)


def _edit_parameters(g: Gaussians, optimizer: torch.optim.Optimizer, keep: Tensor, new_rows: dict[str, Tensor]) -> None:
    """Keep the rows ``keep`` of every parameter, append ``new_rows``, and carry Adam's state."""
    for name in PARAM_NAMES:
        old = getattr(g, name)
        param = nn.Parameter(torch.cat([old.detach()[keep], new_rows[name].detach()]).contiguous())
        for group in optimizer.param_groups:
            if group["params"] and group["params"][0] is old:
                group["params"][0] = param
                state = optimizer.state.pop(old, None)
                if state:
                    for key in ("exp_avg", "exp_avg_sq"):
                        if key in state:
                            pad = torch.zeros_like(new_rows[name])
                            state[key] = torch.cat([state[key][keep], pad]).contiguous()
                    optimizer.state[param] = state
        setattr(g, name, param)
