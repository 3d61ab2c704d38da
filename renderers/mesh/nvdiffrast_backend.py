"""The same ops through ``nvdiffrast.torch`` on CUDA (RasterizeCudaContext only, never GL).

nvdiffrast is imported lazily, on the first call, so importing :mod:`renderers.mesh` never needs
it. One rasteriser context is cached per CUDA device: creating one allocates device buffers.
nvdiffrast wants float32 contiguous tensors and int32 triangles; these wrappers convert and return
float32.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

_CONTEXTS: dict[torch.device, Any] = {}


def _dr() -> Any:
    try:
        import nvdiffrast.torch as dr
    except ImportError as e:  # pragma: no cover - depends on the machine
        raise ImportError(
            "the nvdiffrast mesh backend needs nvdiffrast (pip install nvdiffrast, CUDA build); "
            "use backend='torch' otherwise"
        ) from e
    return dr


def _context(device: torch.device) -> Any:
    """The cached RasterizeCudaContext for ``device``."""
    if device.type != "cuda":
        raise ValueError(f"the nvdiffrast backend needs CUDA tensors, got device {device}")
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    ctx = _CONTEXTS.get(device)
    if ctx is None:
        ctx = _dr().RasterizeCudaContext(device=device)
        _CONTEXTS[device] = ctx
    return ctx


def _tri(tri: Tensor, device: torch.device) -> Tensor:
    return tri.to(device=device, dtype=torch.int32).contiguous()


def rasterize(pos: Tensor, tri: Tensor, resolution: tuple[int, int]) -> Tensor:
    """[C, H, W, 4] rast from ``dr.rasterize`` in instance mode (pos [C, V, 4])."""
    if pos.dim() == 2:
        pos = pos.unsqueeze(0)
    rast, _ = _dr().rasterize(
        _context(pos.device),
        pos.float().contiguous(),
        _tri(tri, pos.device),
        resolution=[int(resolution[0]), int(resolution[1])],
        grad_db=False,
    )
    return rast


def interpolate(attr: Tensor, rast: Tensor, tri: Tensor) -> Tensor:
    """[C, H, W, A] from ``dr.interpolate``; attr [V, A] broadcasts over the minibatch."""
    out, _ = _dr().interpolate(attr.float().contiguous(), rast.contiguous(), _tri(tri, rast.device))
    return out


def texture(tex: Tensor, uv: Tensor, filter_mode: str = "linear", boundary_mode: str = "clamp") -> Tensor:
    """[C, H, W, Ch] from ``dr.texture`` (no mipmaps)."""
    return _dr().texture(
        tex.float().contiguous(),
        uv.float().contiguous(),
        filter_mode=filter_mode,
        boundary_mode=boundary_mode,
    )


def antialias(color: Tensor, rast: Tensor, pos: Tensor, tri: Tensor) -> Tensor:
    """[C, H, W, Ch] from ``dr.antialias`` (silhouette gradients to ``pos``)."""
    if pos.dim() == 2:
        pos = pos.unsqueeze(0)
    return _dr().antialias(
        color.float().contiguous(), rast.contiguous(), pos.float().contiguous(), _tri(tri, pos.device)
    )
