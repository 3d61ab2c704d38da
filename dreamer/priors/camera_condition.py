"""Camera conditioning for a diffusers UNet: which view, how large, and whether the render is flat albedo.

A text-only prior cannot tell from which side it sees an orientation-dependent shape (a pyramid
averaged over views becomes a cone), nor whether a render is flat albedo or shaded (so it judges
flat colours as if shading had darkened them). A camera-conditioned UNet gets, per image, the
features ``(sin k az, cos k az for each harmonic k[, scale], sin el, cos el, flat)`` as
``class_labels`` through diffusers' ``class_embed_type="projection"``.

Why harmonics: a cube or a square pyramid repeats every 90 degrees of azimuth, so its look is a
function of ``4 az``; with ``sin az, cos az`` alone (layout ``/1``) the shapes prior learnt to
ignore the azimuth (its samples moved by 0.5 % of a seed change between a face and a corner).

Why the image scale (layout ``/3``): camera distance and field of view both change how large the
object looks, so without them a view is ambiguous up to a zoom. The ``/2`` shapes prior, trained
over a spread of both, learnt the view barely at all (its clean-image estimate of a noised cube
moved by 0.003 between face-on and corner-on cameras, against 0.023 between the two renders) and
distilled oversized cubes (the red and black ones spanned +-0.62 and +-0.69 against +-0.5); the
``/3`` one (with FiLM too) moves it by 0.015.
``scale`` is ``1 / (distance * tan(fovy / 2))``, the half-height of the frame a unit length at
the origin spans, centred and spread to about -1..1 over the ``cpu`` preset's cameras.

Azimuth and elevation follow :mod:`dreamer.cameras`: from the camera position relative to the
origin, y up; azimuth 0 on the +z axis, increasing towards +x; elevation positive above.
``flat`` is 1 for a flat-albedo render, 0 for a shaded one. A model folder declares its layout
in its ``model_index.json`` under ``CAMERA_CONDITION_KEY``; without the key the UNet is text-only
(Stable Diffusion, DeepFloyd IF).

Example:
    >>> from dreamer.cameras import orbit_cameras
    >>> camera_features(orbit_cameras(0.0, 90.0), flat=True, layout=FIRST_LAYOUT).round(decimals=4)
    tensor([[1., -0., 0., 1., 1.]])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dreamer.cameras import Cameras
from dreamer.errors import DreamerError

#: a model_index.json key (private to Dreamer, ignored by diffusers) naming the feature layout
CAMERA_CONDITION_KEY = "_dreamer_camera_condition"
#: the layout of models trained before the harmonics (they still load)
FIRST_LAYOUT = "azimuth-elevation-flat/1"
#: the layout of models trained before the image scale (they still load)
HARMONICS_LAYOUT = "azimuth-harmonics-elevation-flat/2"
#: the layout new models are trained with
CAMERA_CONDITION_LAYOUT = "azimuth-harmonics-scale-elevation-flat/3"
#: the image scale's centre and spread: the ``cpu`` preset's cameras (distance 2.4..2.8, fovy
#: 40..45 degrees) give scales 0.86..1.14
SCALE_CENTRE, SCALE_SPREAD = 1.0, 0.15


@dataclass(frozen=True)
class Layout:
    """What a layout holds: the azimuth harmonics, and whether the image scale follows them."""

    harmonics: tuple[int, ...]
    image_scale: bool


#: every layout this version reads; a new layout gets a new value, so old code refuses new models clearly
LAYOUTS: dict[str, Layout] = {
    FIRST_LAYOUT: Layout((1,), image_scale=False),
    HARMONICS_LAYOUT: Layout((1, 2, 4), image_scale=False),
    CAMERA_CONDITION_LAYOUT: Layout((1, 2, 4), image_scale=True),
}


def feature_count(layout: str = CAMERA_CONDITION_LAYOUT) -> int:
    """Features per image in ``layout``: a sine and a cosine per harmonic, [scale,] elevation's two, flat."""
    spec = LAYOUTS[layout]
    return 2 * len(spec.harmonics) + 3 + int(spec.image_scale)


def image_scale(distance: Tensor, fovy_deg: Tensor) -> Tensor:
    """[B] ``1 / (distance * tan(fovy / 2))``: how large a unit length at the origin looks in the frame."""
    return 1.0 / (distance.float() * torch.tan(torch.deg2rad(fovy_deg.float()) * 0.5))


def orbit_features(
    azimuth_deg: Tensor,
    elevation_deg: Tensor,
    flat: Tensor | bool,
    scale: Tensor | None = None,
    layout: str = CAMERA_CONDITION_LAYOUT,
) -> Tensor:
    """[B, feature_count(layout)] float32 features from angles [B] in degrees and image scales [B].

    Sines and cosines, not angles: azimuth wraps around, and -180 and 180 must be the same input.
    ``scale`` (:func:`image_scale`) is required by the layouts that hold it and ignored by the others.
    """
    spec = LAYOUTS[layout]
    az, el = torch.deg2rad(azimuth_deg.float()), torch.deg2rad(elevation_deg.float())
    flat_t = torch.as_tensor(flat, dtype=torch.float32, device=az.device).expand_as(az)
    columns = [f(k * az) for k in spec.harmonics for f in (torch.sin, torch.cos)]
    if spec.image_scale:
        if scale is None:
            raise ValueError(f"camera layout {layout!r} needs the image scale")
        columns.append((scale.float().to(az.device) - SCALE_CENTRE) / SCALE_SPREAD)
    return torch.stack([*columns, el.sin(), el.cos(), flat_t], -1)


def camera_features(cameras: Cameras, flat: Tensor | bool, layout: str = CAMERA_CONDITION_LAYOUT) -> Tensor:
    """[B, feature_count(layout)] float32 features of B cameras, read from their positions and lenses.

    Args:
        cameras: the batch's cameras; their centres are taken relative to the origin.
        flat: True (or a [B] bool tensor) for flat-albedo renders, False for shaded ones.
        layout: the model's layout (``parse_camera_condition``).
    """
    positions = cameras.positions.float()
    x, y, z = positions.unbind(-1)
    azimuth = torch.rad2deg(torch.atan2(x, z))  # ill-defined straight overhead, where any value will do
    elevation = torch.rad2deg(torch.atan2(y, torch.hypot(x, z)))
    scale = image_scale(positions.norm(dim=-1), cameras.fovy_deg.to(positions.device))
    return orbit_features(azimuth, elevation, flat, scale, layout)


def parse_camera_condition(value: object, model: str) -> str | None:
    """The layout a model_index.json value of ``CAMERA_CONDITION_KEY`` names (None when absent: text-only).

    Raises:
        DreamerError: the value names a layout this version of Dreamer does not know.
    """
    if value is None:
        return None
    if value not in LAYOUTS:
        known = ", ".join(repr(k) for k in LAYOUTS)
        raise DreamerError(
            f"model '{model}': unknown camera conditioning {value!r} in model_index.json "
            f"(this Dreamer knows {known}); update Dreamer or retrain the model"
        )
    return str(value)
