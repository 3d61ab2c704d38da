"""Camera conditioning for a diffusers UNet: which view, and whether the render is flat albedo.

A text-only prior cannot tell from which side it sees an orientation-dependent shape (a pyramid
averaged over views becomes a cone), nor whether a render is flat albedo or shaded (so it judges
flat colours as if shading had darkened them). A camera-conditioned UNet gets, per image, the
features ``(sin k az, cos k az for each harmonic k, sin el, cos el, flat)`` as ``class_labels``
through diffusers' ``class_embed_type="projection"``.

Why harmonics: a cube or a square pyramid repeats every 90 degrees of azimuth, so its look is a
function of ``4 az``; with ``sin az, cos az`` alone (layout ``/1``) the shapes prior learnt to
ignore the azimuth (its samples moved by 0.5 % of a seed change between a face and a corner).

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

import torch
from torch import Tensor

from dreamer.cameras import Cameras
from dreamer.errors import DreamerError

#: a model_index.json key (private to Dreamer, ignored by diffusers) naming the feature layout
CAMERA_CONDITION_KEY = "_dreamer_camera_condition"
#: the layout of models trained before the harmonics (they still load)
FIRST_LAYOUT = "azimuth-elevation-flat/1"
#: the layout new models are trained with
CAMERA_CONDITION_LAYOUT = "azimuth-harmonics-elevation-flat/2"
#: the azimuth harmonics of each layout; a new layout gets a new value, so old code refuses new models clearly
AZIMUTH_HARMONICS: dict[str, tuple[int, ...]] = {FIRST_LAYOUT: (1,), CAMERA_CONDITION_LAYOUT: (1, 2, 4)}


def feature_count(layout: str = CAMERA_CONDITION_LAYOUT) -> int:
    """Features per image in ``layout``: a sine and a cosine per harmonic, then elevation's two and flat."""
    return 2 * len(AZIMUTH_HARMONICS[layout]) + 3


def angle_features(
    azimuth_deg: Tensor, elevation_deg: Tensor, flat: Tensor | bool, layout: str = CAMERA_CONDITION_LAYOUT
) -> Tensor:
    """[B, feature_count(layout)] float32 features from angles [B] in degrees.

    Sines and cosines, not angles: azimuth wraps around, and -180 and 180 must be the same input.
    """
    az, el = torch.deg2rad(azimuth_deg.float()), torch.deg2rad(elevation_deg.float())
    flat_t = torch.as_tensor(flat, dtype=torch.float32, device=az.device).expand_as(az)
    columns = [f(k * az) for k in AZIMUTH_HARMONICS[layout] for f in (torch.sin, torch.cos)]
    return torch.stack([*columns, el.sin(), el.cos(), flat_t], -1)


def camera_features(cameras: Cameras, flat: Tensor | bool, layout: str = CAMERA_CONDITION_LAYOUT) -> Tensor:
    """[B, feature_count(layout)] float32 features of B cameras, read from their positions (any camera).

    Args:
        cameras: the batch's cameras; their centres are taken relative to the origin.
        flat: True (or a [B] bool tensor) for flat-albedo renders, False for shaded ones.
        layout: the model's layout (``parse_camera_condition``).
    """
    x, y, z = cameras.positions.float().unbind(-1)
    azimuth = torch.rad2deg(torch.atan2(x, z))  # ill-defined straight overhead, where any value will do
    elevation = torch.rad2deg(torch.atan2(y, torch.hypot(x, z)))
    return angle_features(azimuth, elevation, flat, layout)


def parse_camera_condition(value: object, model: str) -> str | None:
    """The layout a model_index.json value of ``CAMERA_CONDITION_KEY`` names (None when absent: text-only).

    Raises:
        DreamerError: the value names a layout this version of Dreamer does not know.
    """
    if value is None:
        return None
    if value not in AZIMUTH_HARMONICS:
        known = ", ".join(repr(k) for k in AZIMUTH_HARMONICS)
        raise DreamerError(
            f"model '{model}': unknown camera conditioning {value!r} in model_index.json "
            f"(this Dreamer knows {known}); update Dreamer or retrain the model"
        )
    return str(value)
