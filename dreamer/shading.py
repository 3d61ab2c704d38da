"""Lambertian shading, shared by the reference prior and the stages that shade their renders.

Shading is what makes geometry visible to a prior: a cup's inside, coloured like its outside, is
invisible in albedo renders and obvious under a light. Both sides of a comparison (a stage's
render and the reference prior's r(c)) must be shaded by this one function.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dreamer.priors.base import Views


def shade(albedo: Tensor, normal_world: Tensor, alpha: Tensor, views: Views) -> Tensor:
    """Composite [B, H, W, 3] renders over ``views.background``, shaded as ``views.shading`` says.

    Args:
        albedo: [B, H, W, 3] in [0, 1]; normal_world: [B, H, W, 3] unit (0 where empty);
        alpha: [B, H, W, 1] coverage.
    """
    if views.shading == "textureless":
        albedo = torch.full_like(albedo, 0.8)
    if views.shading != "albedo":
        if views.light_dirs is None:
            raise ValueError("shaded views need light_dirs")
        light = views.light_dirs.to(albedo)[:, None, None, :]
        lambert = (normal_world * light).sum(-1, keepdim=True).clamp_min(0.0)
        albedo = albedo * (views.ambient + (1.0 - views.ambient) * lambert)
    bg = views.background.to(albedo)[:, None, None, :]
    return albedo * alpha + bg * (1.0 - alpha)


def sample_light_dirs(camera_positions: Tensor, generator: torch.Generator, spread_deg: float = 45.0) -> Tensor:
    """[B, 3] unit light directions around each camera's viewing direction (DreamFusion-style).

    Lights come from the camera's side of the object, tilted by up to ``spread_deg`` so that
    shading varies between views but the visible surface is rarely all in shadow.
    """
    view = torch.nn.functional.normalize(camera_positions.float().cpu(), dim=-1)
    B = view.shape[0]
    jitter = torch.randn(B, 3, generator=generator)
    jitter = jitter - (jitter * view).sum(-1, keepdim=True) * view
    jitter = torch.nn.functional.normalize(jitter, dim=-1)
    angle = torch.rand(B, 1, generator=generator) * math.radians(spread_deg)
    return (view * torch.cos(angle) + jitter * torch.sin(angle)).to(camera_positions.device)
