"""Renders of the shapes world, captioned the way prompts reach the prior.

Cameras are drawn like the generation cameras of the ``cpu`` preset (orbit, elevation -30..60,
radius 2.4..2.8, fovy 40..45), so the model learns the scale and framing that score
distillation will show it. Half the renders are flat albedo (what a Gaussian coarse stage
renders), half are Lambertian-shaded by :func:`dreamer.shading.shade` under a light near the
camera (what shaded stages render). Backgrounds are random greys kept away from the object's
colour, so every silhouette stays visible and the object is the only coloured thing in the image
(colour words are learnt fast); the stages composite over the same kind of background
(``background: random_grey``). Everything is drawn from one seeded generator: same seed, same bytes.
Each image keeps its camera angles, its image scale and whether it is flat, the features a
camera-conditioned prior is trained on (:mod:`dreamer.priors.camera_condition`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from dreamer.cameras import Cameras, sample_orbit_cameras
from dreamer.priors.base import VIEW_SUFFIX, Views
from dreamer.priors.camera_condition import image_scale, orbit_features
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
    view: [N] view labels ("front", "side", "back", "overhead"); azimuth, elevation: [N] float32
    camera angles in degrees (:mod:`dreamer.cameras`' orbit convention, azimuth in [-180, 180));
    scale: [N] float32 image scales (:func:`dreamer.priors.camera_condition.image_scale`);
    flat: [N] bool, True for a flat-albedo render, False for a Lambertian-shaded one."""

    images: np.ndarray
    shape: np.ndarray
    colour: np.ndarray
    view: list[str]
    azimuth: np.ndarray
    elevation: np.ndarray
    scale: np.ndarray
    flat: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    def unit_images(self) -> torch.Tensor:
        """[N, S, S, 3] float32 in [0, 1], the layout priors and the judge take."""
        return torch.from_numpy(self.images).float() / 255.0

    def caption(self, i: int, with_view: bool = True) -> str:
        text = prompt_text(COLOUR_NAMES[self.colour[i]], SHAPES[self.shape[i]])
        return text + VIEW_SUFFIX[self.view[i]] if with_view else text

    def camera_features(self, idx: np.ndarray, mirrored: torch.Tensor) -> torch.Tensor:
        """[B, F] camera features (newest layout) of the images ``idx``; ``mirrored`` [B] marks flipped images.

        Every primitive is symmetric under x -> -x, and reflecting the world in the x = 0 plane
        takes the camera at azimuth ``az`` to the one at ``-az`` with its image flipped left-right:
        a flipped render is the render from ``-az`` (same elevation and scale). The view label, which
        depends on ``|az|``, is unchanged, so captions stay right.
        """
        azimuth = torch.from_numpy(self.azimuth[idx])
        azimuth = torch.where(torch.as_tensor(mirrored), -azimuth, azimuth)
        elevation, scale = torch.from_numpy(self.elevation[idx]), torch.from_numpy(self.scale[idx])
        return orbit_features(azimuth, elevation, torch.from_numpy(self.flat[idx]), scale)


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


def render_canonical(shape: str, colour: str, views: Sequence[Views], size: int) -> np.ndarray:
    """[len(views), size, size, 3] uint8 renders of the canonical primitive, one camera per ``Views``.

    Rendered ``SUPERSAMPLE`` times larger and box-filtered down; each image is shaded and
    composited as its ``Views`` says (:func:`dreamer.shading.shade`).
    """
    mesh = canonical_mesh(shape, colour)
    cams = Cameras.cat([v.cameras for v in views])
    big = size * SUPERSAMPLE
    out = render_mesh(
        torch.as_tensor(mesh.vertices),
        torch.as_tensor(mesh.faces),
        cams.mvp(big, big),
        cams.w2c(),
        (big, big),
        vertex_colors=torch.as_tensor(mesh.vertex_colors),
        backend="torch",
    )
    images = [
        shade(out.rgb[i : i + 1], out.face_normal_world[i : i + 1], out.alpha[i : i + 1], v)
        for i, v in enumerate(views)
    ]
    rgb = F.avg_pool2d(torch.cat(images).permute(0, 3, 1, 2), SUPERSAMPLE).permute(0, 2, 3, 1)
    return (rgb.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def _render_prompt(
    shape: str, colour: str, n: int, size: int, generator: torch.Generator
) -> tuple[np.ndarray, Cameras, torch.Tensor]:
    """n random renders of one prompt, their cameras and their [n] bool flat flags."""
    cams = sample_orbit_cameras(n, generator, ELEVATION, RADIUS, FOVY)
    background = contrasting_backgrounds(colour_rgb(colour), n, generator)
    light = sample_light_dirs(cams.positions, generator)
    ambient = 0.3 + 0.3 * torch.rand(n, generator=generator)
    flat = torch.rand(n, generator=generator) < 0.5
    views = [
        Views(
            cams[i],
            background[i : i + 1],
            shading="albedo" if flat[i] else "lambertian",
            light_dirs=light[i : i + 1],
            ambient=float(ambient[i]),
        )
        for i in range(n)
    ]
    return render_canonical(shape, colour, views, size), cams, flat


def make_dataset(per_prompt: int, seed: int, size: int = 32, chunk: int = 50, progress: bool = True) -> ShapesData:
    """``per_prompt`` renders of each of the 48 prompts at ``size`` pixels, deterministic in ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    images, shapes, colours, cams, flat = [], [], [], [], []
    prompts = all_prompts()
    bar = tqdm(total=len(prompts) * per_prompt, desc="rendering shapes", unit="img", disable=not progress, leave=False)
    for colour, shape in prompts:
        for start in range(0, per_prompt, chunk):
            n = min(chunk, per_prompt - start)
            batch, batch_cams, batch_flat = _render_prompt(shape, colour, n, size, generator)
            images.append(batch)
            cams.append(batch_cams)
            flat.append(batch_flat)
            bar.update(n)
        shapes.append(np.full(per_prompt, SHAPES.index(shape)))
        colours.append(np.full(per_prompt, COLOUR_NAMES.index(colour)))
    bar.close()
    all_cams = Cameras.cat(cams)
    return ShapesData(
        images=np.concatenate(images),
        shape=np.concatenate(shapes),
        colour=np.concatenate(colours),
        view=all_cams.view_labels(),
        azimuth=all_cams.azimuth_deg.numpy(),
        elevation=all_cams.elevation_deg.numpy(),
        scale=image_scale(all_cams.radius, all_cams.fovy_deg).numpy(),
        flat=torch.cat(flat).numpy(),
    )


def batches(data: ShapesData, batch_size: int, generator: torch.Generator) -> Iterator[np.ndarray]:
    """Endless shuffled index batches over ``data``."""
    while True:
        order = torch.randperm(len(data), generator=generator).numpy()
        for start in range(0, len(order) - batch_size + 1, batch_size):
            yield order[start : start + batch_size]
