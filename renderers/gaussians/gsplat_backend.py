"""gsplat (CUDA) backend with the same inputs and outputs as ``torch_backend.rasterize``.

gsplat is imported inside the function: importing it is cheap, but its first call builds or
loads the CUDA extension, and this package must import on machines without CUDA.
"""

from __future__ import annotations

import torch
from torch import Tensor


def rasterize(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    backgrounds: Tensor | None = None,
    near_plane: float = 0.01,
    eps2d: float = 0.3,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Render with ``gsplat.rasterization`` ("RGB+ED", unpacked); returns (rgb, alpha, depth,
    means2d [C,N,2], radii [C,N] int32), like the torch backend."""
    from gsplat import rasterization

    D = colors.shape[-1]
    renders, alphas, info = rasterization(
        means=means,
        quats=quats,
        scales=scales,
        opacities=opacities,
        colors=colors,
        viewmats=viewmats,
        Ks=Ks,
        width=width,
        height=height,
        near_plane=near_plane,
        eps2d=eps2d,
        packed=False,
        backgrounds=backgrounds,
        render_mode="RGB+ED",
        rasterize_mode="classic",
    )
    rgb = renders[..., :D]
    depth = renders[..., D : D + 1]
    depth = torch.where(alphas > 1e-6, depth, torch.zeros_like(depth))
    radii = info["radii"]
    if radii.dim() == 3:  # gsplat >= 1.5: per-axis radii [C, N, 2]
        radii = radii.amax(-1)
    return rgb, alphas, depth, info["means2d"], radii.to(torch.int32)
