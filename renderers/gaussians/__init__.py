"""3D Gaussian splatting: one entry point, a CUDA backend (gsplat) and a pure-PyTorch one.

Frames: ``viewmats`` map world to camera in the OpenCV frame (+x right, +y down, +z forward);
``Ks`` map camera to pixels with pixel (0, 0)'s top-left corner at the origin (centres at +0.5).
Formula (gsplat's): ``Σ = R S Sᵀ Rᵀ``, ``Σ2d = J W Σ Wᵀ Jᵀ + eps2d·I``,
``α = min(0.999, o·exp(-½ dᵀ Σ2d⁻¹ d))`` (pairs with α < 1/255 skipped), front-to-back
``w_i = α_i Π_{j<i}(1-α_j)`` stopping once transmittance would reach 1e-4,
``rgb = Σ w c + (1 - Σ w)·bg``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor

__all__ = ["GaussianRender", "rasterize_gaussians"]


@dataclass
class GaussianRender:
    """What one call renders, for C cameras of H x W pixels and N Gaussians.

    Attributes:
        rgb: [C, H, W, D] composited features, background included.
        alpha: [C, H, W, 1] accumulated opacity Σ w.
        depth: [C, H, W, 1] expected camera z, Σ w z / Σ w (0 where alpha < 1e-6).
        means2d: [C, N, 2] projected centres in pixels; its ``.grad`` after backward is the
            screen-space gradient that 3DGS densification accumulates.
        radii: [C, N] int32 pixel radius of the 3-sigma box; 0 = culled or off-screen.
    """

    rgb: Tensor
    alpha: Tensor
    depth: Tensor
    means2d: Tensor
    radii: Tensor


def rasterize_gaussians(
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
    backend: Literal["auto", "torch", "gsplat"] = "auto",
) -> GaussianRender:
    """Differentiably render N 3D Gaussians into C pinhole cameras.

    Args:
        means: [N, 3] centres in world space.
        quats: [N, 4] rotations, wxyz; normalised here, so any non-zero norm works.
        scales: [N, 3] linear (not log) standard deviations along the rotated axes.
        opacities: [N] in (0, 1) (activated, not logits).
        colors: [N, D] features to composite; any D (3 for RGB).
        viewmats: [C, 4, 4] world-to-camera, OpenCV frame (+z forward, +y down).
        Ks: [C, 3, 3] pixel intrinsics; pixel (0, 0)'s top-left corner is the origin.
        width, height: image size in pixels.
        backgrounds: [C, D] composited behind: ``rgb = Σ w c + (1 - alpha)·bg``; None = zeros.
        near_plane: Gaussians whose camera z is below this are culled (radius 0).
        eps2d: low-pass dilation added to the 2D covariance diagonal (px²), as gsplat.
        backend: "torch" (pure PyTorch, any device), "gsplat" (CUDA), or "auto" (gsplat when
            the tensors are on CUDA, else torch).

    Returns:
        A ``GaussianRender`` (rgb [C,H,W,D], alpha [C,H,W,1], depth [C,H,W,1], means2d [C,N,2],
        radii [C,N]).

    Notes:
        * Gradients flow to means, quats, scales, opacities, colors and backgrounds.
        * ``means2d.retain_grad()`` is called when ``means`` requires grad, so its ``.grad`` is
          available after backward (for densification).
        * Depth is gsplat's "ED" (expected depth), the z of the camera frame, not ray distance.
        * The torch backend is exact per pixel (no tiles) and memory is O(Gaussian-pixel pairs).
    """
    if backend == "auto":
        backend = "gsplat" if means.is_cuda else "torch"
    if backend == "gsplat":
        from .gsplat_backend import rasterize
    elif backend == "torch":
        from .torch_backend import rasterize
    else:
        raise ValueError(f"unknown backend {backend!r}")
    rgb, alpha, depth, means2d, radii = rasterize(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height,
        backgrounds=backgrounds, near_plane=near_plane, eps2d=eps2d,
    )  # fmt: skip
    if means.requires_grad and means2d.requires_grad:
        means2d.retain_grad()
    return GaussianRender(rgb=rgb, alpha=alpha, depth=depth, means2d=means2d, radii=radii)
