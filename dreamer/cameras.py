"""Orbit cameras in the fixed scene convention.

Scene space is right-handed, y up, the object's front faces +z. An orbit camera at elevation
``el`` (degrees, positive above) and azimuth ``az`` (degrees, 0 = on the +z axis looking at the
front, increasing towards +x) sits at ``r * (cos el sin az, sin el, cos el cos az)`` and looks
at the origin. Camera frames are OpenGL's (the camera looks down its -z, +y up); ``viewmats``
converts to OpenCV's (+z forward, +y down) for renderers that use it, like gsplat.

Example:
    >>> cams = orbit_cameras([0.0, 30.0], [0.0, 90.0], radius=2.5, fovy_deg=45.0)
    >>> cams.c2w.shape, cams.view_labels()
    (torch.Size([2, 4, 4]), ['front', 'side'])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

ViewLabel = Literal["front", "side", "back", "overhead"]
VIEW_LABELS: tuple[ViewLabel, ...] = ("front", "side", "back", "overhead")

_GL_TO_CV = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0]))


def view_label(
    elevation_deg: float,
    azimuth_deg: float,
    front_threshold: float = 45.0,
    back_threshold: float = 45.0,
    overhead_threshold: float = 60.0,
) -> ViewLabel:
    """The view-dependent prompt suffix for one camera (threestudio's thresholds by default)."""
    if elevation_deg > overhead_threshold:
        return "overhead"
    az = wrap_azimuth(azimuth_deg)
    if abs(az) < front_threshold:
        return "front"
    if abs(az) > 180.0 - back_threshold:
        return "back"
    return "side"


def wrap_azimuth(azimuth_deg: float) -> float:
    """Wrap an azimuth to (-180, 180]."""
    az = math.fmod(azimuth_deg, 360.0)
    if az > 180.0:
        az -= 360.0
    elif az <= -180.0:
        az += 360.0
    return az


@dataclass(frozen=True)
class Cameras:
    """A batch of C pinhole cameras.

    Attributes:
        c2w: [C, 4, 4] camera-to-world, OpenGL camera frame.
        fovy_deg: [C] vertical field of view in degrees.
        elevation_deg, azimuth_deg, radius: [C] the orbit parameters that made them.
    """

    c2w: Tensor
    fovy_deg: Tensor
    elevation_deg: Tensor
    azimuth_deg: Tensor
    radius: Tensor

    def __len__(self) -> int:
        return self.c2w.shape[0]

    def __getitem__(self, index: int | slice | Tensor) -> Cameras:
        if isinstance(index, int):
            index = slice(index, index + 1)
        return Cameras(*(getattr(self, f)[index] for f in self._fields()))

    @staticmethod
    def _fields() -> tuple[str, ...]:
        return ("c2w", "fovy_deg", "elevation_deg", "azimuth_deg", "radius")

    @staticmethod
    def cat(cams: Sequence[Cameras]) -> Cameras:
        return Cameras(*(torch.cat([getattr(c, f) for c in cams]) for f in Cameras._fields()))

    def to(self, device: torch.device | str) -> Cameras:
        return Cameras(*(getattr(self, f).to(device) for f in self._fields()))

    @property
    def device(self) -> torch.device:
        return self.c2w.device

    @property
    def positions(self) -> Tensor:
        """[C, 3] camera centres in world space."""
        return self.c2w[:, :3, 3]

    def w2c(self) -> Tensor:
        """[C, 4, 4] world-to-camera, OpenGL frame (the rigid inverse: R^T, -R^T t)."""
        rot_t = self.c2w[:, :3, :3].transpose(1, 2)
        w2c = torch.zeros_like(self.c2w)
        w2c[:, :3, :3] = rot_t
        w2c[:, :3, 3] = -(rot_t @ self.c2w[:, :3, 3:4]).squeeze(-1)
        w2c[:, 3, 3] = 1.0
        return w2c

    def rotate_to_camera(self, vectors: Tensor) -> Tensor:
        """World-space directions [C, ..., 3] (normals) in each camera's OpenGL frame (rotation only)."""
        rot = self.w2c()[:, :3, :3].to(vectors)
        return torch.einsum("cij,c...j->c...i", rot, vectors)

    def viewmats(self) -> Tensor:
        """[C, 4, 4] world-to-camera in the OpenCV frame (+z forward, +y down), as gsplat wants."""
        return _GL_TO_CV.to(self.c2w) @ self.w2c()

    def focal_px(self, height: int) -> Tensor:
        """[C] focal length in pixels for images of the given height (square pixels)."""
        return 0.5 * height / torch.tan(torch.deg2rad(self.fovy_deg) * 0.5)

    def intrinsics(self, height: int, width: int) -> Tensor:
        """[C, 3, 3] pixel intrinsics; pixel (0, 0) is the top-left pixel's corner."""
        f = self.focal_px(height)
        K = torch.zeros(len(self), 3, 3, dtype=self.c2w.dtype, device=self.device)
        K[:, 0, 0] = f
        K[:, 1, 1] = f
        K[:, 0, 2] = width * 0.5
        K[:, 1, 2] = height * 0.5
        K[:, 2, 2] = 1.0
        return K

    def projection(self, height: int, width: int, near: float = 0.05, far: float = 100.0) -> Tensor:
        """[C, 4, 4] OpenGL projection (camera -> clip space)."""
        t = 1.0 / torch.tan(torch.deg2rad(self.fovy_deg) * 0.5)
        P = torch.zeros(len(self), 4, 4, dtype=self.c2w.dtype, device=self.device)
        P[:, 0, 0] = t * height / width
        P[:, 1, 1] = t
        P[:, 2, 2] = -(far + near) / (far - near)
        P[:, 2, 3] = -2.0 * far * near / (far - near)
        P[:, 3, 2] = -1.0
        return P

    def mvp(self, height: int, width: int, near: float = 0.05, far: float = 100.0) -> Tensor:
        """[C, 4, 4] world -> clip space, for nvdiffrast-style rasterisers."""
        return self.projection(height, width, near, far) @ self.w2c()

    def view_labels(self, front_threshold: float = 45.0, back_threshold: float = 45.0) -> list[ViewLabel]:
        return [
            view_label(float(e), float(a), front_threshold, back_threshold)
            for e, a in zip(self.elevation_deg.tolist(), self.azimuth_deg.tolist())
        ]


def _as_tensor(x: float | Sequence[float] | Tensor, n: int | None = None) -> Tensor:
    t = torch.as_tensor(x, dtype=torch.float32).reshape(-1)
    if n is not None and t.numel() == 1:
        t = t.expand(n).clone()
    return t


def orbit_cameras(
    elevation_deg: float | Sequence[float] | Tensor,
    azimuth_deg: float | Sequence[float] | Tensor,
    radius: float | Sequence[float] | Tensor = 2.5,
    fovy_deg: float | Sequence[float] | Tensor = 45.0,
) -> Cameras:
    """Cameras on a sphere around the origin, looking at it with y up (scalars broadcast)."""
    el = _as_tensor(elevation_deg)
    az = _as_tensor(azimuth_deg)
    n = max(el.numel(), az.numel())
    el, az = _as_tensor(el, n), _as_tensor(az, n)
    r, fov = _as_tensor(radius, n), _as_tensor(fovy_deg, n)
    if not (el.numel() == az.numel() == r.numel() == fov.numel()):
        raise ValueError("orbit_cameras: elevation, azimuth, radius and fov must broadcast to one length")
    el_r, az_r = torch.deg2rad(el), torch.deg2rad(az)
    back = torch.stack([torch.cos(el_r) * torch.sin(az_r), torch.sin(el_r), torch.cos(el_r) * torch.cos(az_r)], -1)
    # right = normalise(cross(world_up, back)), written in closed form so that it stays defined
    # straight overhead.
    right = torch.stack([torch.cos(az_r), torch.zeros_like(az_r), -torch.sin(az_r)], -1)
    up = torch.linalg.cross(back, right)
    c2w = torch.zeros(n, 4, 4)
    c2w[:, :3, 0] = right
    c2w[:, :3, 1] = up
    c2w[:, :3, 2] = back
    c2w[:, :3, 3] = back * r[:, None]
    c2w[:, 3, 3] = 1.0
    return Cameras(c2w=c2w, fovy_deg=fov, elevation_deg=el, azimuth_deg=az, radius=r)


def sample_orbit_cameras(
    n: int,
    generator: torch.Generator,
    elevation_range: tuple[float, float] = (-10.0, 45.0),
    radius_range: tuple[float, float] = (2.2, 2.8),
    fovy_range: tuple[float, float] = (40.0, 50.0),
    azimuth_range: tuple[float, float] = (-180.0, 180.0),
) -> Cameras:
    """Random orbit cameras; azimuths are stratified over the batch so each batch sees all sides.

    Elevation is drawn uniformly on the sphere (not in degrees), so overhead views are not
    over-represented.
    """
    u = torch.rand(4, n, generator=generator)
    sin_lo, sin_hi = (math.sin(math.radians(v)) for v in elevation_range)
    el = torch.rad2deg(torch.asin(sin_lo + (sin_hi - sin_lo) * u[0]))
    az_lo, az_hi = azimuth_range
    az = az_lo + (az_hi - az_lo) * (torch.arange(n) + u[1]) / n
    r = radius_range[0] + (radius_range[1] - radius_range[0]) * u[2]
    fov = fovy_range[0] + (fovy_range[1] - fovy_range[0]) * u[3]
    return orbit_cameras(el, az, r, fov)


def framing_radius(fovy_deg: float, object_radius: float = 1.0, margin: float = 1.1) -> float:
    """Distance at which a ball of ``object_radius`` fills the vertical field of view (times margin)."""
    return margin * object_radius / math.sin(math.radians(fovy_deg) * 0.5)


def sample_framed_cameras(
    n: int,
    generator: torch.Generator,
    object_radius: float,
    fovy_range: tuple[float, float] = (20.0, 70.0),
    elevation_range: tuple[float, float] = (-10.0, 45.0),
    margin_range: tuple[float, float] = (1.05, 1.3),
) -> Cameras:
    """Orbit cameras with varying fields of view, each at the distance that keeps a ball of
    ``object_radius`` (centred at the origin) inside its frame: narrow lenses see details up
    close, wide ones see the object with strong perspective (DreamPolish's polishing views).
    """
    cams = sample_orbit_cameras(n, generator, elevation_range, (1.0, 1.0), fovy_range)
    margin = margin_range[0] + (margin_range[1] - margin_range[0]) * torch.rand(n, generator=generator)
    radius = torch.tensor([framing_radius(float(f), object_radius, float(m)) for f, m in zip(cams.fovy_deg, margin)])
    return orbit_cameras(cams.elevation_deg, cams.azimuth_deg, radius, cams.fovy_deg)
