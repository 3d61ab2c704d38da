"""What every representation renders: the stage loop and the objectives see only this."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class RenderOut:
    """Images of a batch of B cameras, channels-last, rows top-down.

    Attributes:
        rgb: [B, H, W, 3] in [0, 1], composited over the background.
        alpha: [B, H, W, 1] accumulated opacity.
        depth: [B, H, W, 1] expected camera-space depth (0 where empty).
        normal: [B, H, W, 3] world-space normals, when the representation has them.
    """

    rgb: Tensor
    alpha: Tensor
    depth: Tensor
    normal: Tensor | None = None
