"""Renders of the shapes world, captioned the way prompts reach the prior.

Cameras are drawn like the generation cameras of the ``cpu`` preset (orbit, elevation -30..60,
radius 2.4..2.8, fovy 40..45), so the model learns the scale and framing that score
distillation will show it. Half the renders are flat albedo (what a Gaussian coarse stage
renders), half are Lambertian-shaded by :func:`dreamer.shading.shade` under a light near the
camera (what shaded stages render). Backgrounds are random greys kept away from the object's
colour, so every silhouette stays visible and the object is the only coloured thing in the image
(colour words are learnt fast); the stages composite over the same kind of background
(``background: random_grey``). Everything is drawn from one seeded generator: same seed, same bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from dreamer.cameras import sample_orbit_cameras
from dreamer.priors.base import VIEW_SUFFIX, Views
from dreamer.priors.shapes.world import COLOUR_NAMES, SHAPES, all_prompts, canonical_mesh, colour_rgb, prompt_text
from dreamer.shading import sample_light_dirs, shade
from renderers.mesh import render_mesh

#: the ``cpu`` preset's coarse cameras
ELEVATION = (-30.0, 60.0)
RADIUS = (2.4, 2.8)
FOVY = (40.0, 45.0)
#: smallest per-channel distance (max over RGB) between a background and the object's colour
MIN_CONTRAST = 0.35
#: renders are made this many times larger and box-filtered down (antialiased silhouettes)
SUPERSAMPLE = 2


@dataclass
class ShapesData:
    """images: [N, S, S, 3] uint8; shape, colour: [N] int64 indices into SHAPES / COLOUR_NAMES;
    view: [N] view labels ("front", "side", "back", "overhead")."""

    images: np.ndarray
    shape: np.ndarray
    colour: np.ndarray
    view: list[str]

    def __len__(self) -> int:
        return len(self.images)

    def unit_images(self) -> torch.Tensor:
        """[N, S, S, 3] float32 in [0, 1], the layout priors and the judge take."""
        return torch.from_numpy(self.images).float() / 255.0

    def caption(self, i: int, with_view: bool = True) -> str:
        text = prompt_text(COLOUR_NAMES[self.colour[i]], SHAPES[self.shape[i]])
        return text + VIEW_SUFFIX[self.view[i]] if with_view else text


def contrasting_backgrounds(colour: np.ndarray, n: int, generator: torch.Generator) -> torch.Tensor:
    """[n, 3] random greys at least MIN_CONTRAST away from ``colour`` in some channel."""
    out = torch.empty(n, 3)
    target = torch.as_tensor(colour)
    filled = 0
    while filled < n:
        candidates = torch.rand(4 * n, 1, generator=generator).expand(4 * n, 3)
        keep = candidates[(candidates - target).abs().amax(-1) >= MIN_CONTRAST][: n - filled]
        out[filled : filled + len(keep)] = keep
        filled += len(keep)
    return out


def _render_prompt(
    shape: str, colour: str, n: int, size: int, generator: torch.Generator
) -> tuple[np.ndarray, list[str]]:
    mesh = canonical_mesh(shape, colour)
    cams = sample_orbit_cameras(n, generator, ELEVATION, RADIUS, FOVY)
    background = contrasting_backgrounds(colour_rgb(colour), n, generator)
    light = sample_light_dirs(cams.positions, generator)
    ambient = 0.3 + 0.3 * torch.rand(n, generator=generator)
    flat = torch.rand(n, generator=generator) < 0.5
    big = size * SUPERSAMPLE
    vertices = torch.as_tensor(mesh.vertices)
    out = render_mesh(
        vertices,
        torch.as_tensor(mesh.faces),
        cams.mvp(big, big),
        cams.w2c(),
        (big, big),
        vertex_colors=torch.as_tensor(mesh.vertex_colors),
        backend="torch",
    )
    images = []
    for i in range(n):
        views = Views(
            cams,
            background[i : i + 1],
            shading="albedo" if flat[i] else "lambertian",
            light_dirs=light[i : i + 1],
            ambient=float(ambient[i]),
        )
        images.append(shade(out.rgb[i : i + 1], out.face_normal_world[i : i + 1], out.alpha[i : i + 1], views))
    rgb = torch.cat(images).permute(0, 3, 1, 2)
    rgb = F.avg_pool2d(rgb, SUPERSAMPLE).permute(0, 2, 3, 1)
    return (rgb.clamp(0, 1) * 255).round().to(torch.uint8).numpy(), cams.view_labels()


def make_dataset(per_prompt: int, seed: int, size: int = 32, chunk: int = 50, progress: bool = True) -> ShapesData:
    """``per_prompt`` renders of each of the 48 prompts at ``size`` pixels, deterministic in ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    images, shapes, colours, views = [], [], [], []
    prompts = all_prompts()
    bar = tqdm(total=len(prompts) * per_prompt, desc="rendering shapes", unit="img", disable=not progress, leave=False)
    for colour, shape in prompts:
        for start in range(0, per_prompt, chunk):
            n = min(chunk, per_prompt - start)
            batch, labels = _render_prompt(shape, colour, n, size, generator)
            images.append(batch)
            views += labels
            bar.update(n)
        shapes.append(np.full(per_prompt, SHAPES.index(shape)))
        colours.append(np.full(per_prompt, COLOUR_NAMES.index(colour)))
    bar.close()
    return ShapesData(np.concatenate(images), np.concatenate(shapes), np.concatenate(colours), views)


def batches(data: ShapesData, batch_size: int, generator: torch.Generator) -> Iterator[np.ndarray]:
    """Endless shuffled index batches over ``data``."""
    while True:
        order = torch.randperm(len(data), generator=generator).numpy()
        for start in range(0, len(order) - batch_size + 1, batch_size):
            yield order[start : start + batch_size]
