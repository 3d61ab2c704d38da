"""PNG images from float tensors in [0, 1], written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dreamer.export.files import atomic_path


def to_uint8(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """[H, W, C] float in [0, 1] -> uint8."""
    if isinstance(image, torch.Tensor):
        image = image.detach().float().cpu().numpy()
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def save_image(image: torch.Tensor | np.ndarray, path: Path) -> Path:
    """Write an [H, W, 3] (or [H, W, 1]) image as PNG; it appears whole or not at all."""
    pixels = to_uint8(image)
    if pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")
    return Path(path)


def image_grid(images: list[torch.Tensor], columns: int) -> torch.Tensor:
    """Tile equally sized [H, W, 3] images row by row."""
    rows = [torch.cat(images[i : i + columns], dim=1) for i in range(0, len(images), columns)]
    width = max(r.shape[1] for r in rows)
    rows = [torch.nn.functional.pad(r, (0, 0, 0, width - r.shape[1]), value=1.0) for r in rows]
    return torch.cat(rows, dim=0)
