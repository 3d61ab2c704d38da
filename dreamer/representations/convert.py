"""Hand-offs between the progressive route's representations that keep the surface.

* NeRF -> NeuS (:func:`sdf_from_density`): the SDF field inherits the NeRF's encoding and albedo
  head, then is fitted to the signed distance of the NeRF's ``level`` isosurface (a distance
  transform of the thresholded density grid). threestudio starts NeuS from a sphere and only
  reuses matching weights; fitting first means NeuS starts where the NeRF ended.
* NeuS -> DMTet (:func:`dmtet_from_sdf`): the SDF sampled at the tetrahedral grid's vertices, no
  deformation; the field stays on as the DMTet's colour.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dreamer.representations.dmtet import DMTet
from dreamer.representations.fields import DensityField, SDFField


def field_grid(fn, resolution: int, radius: float, chunk: int = 65536) -> Tensor:
    """``fn`` on the [resolution]^3 lattice over [-radius, radius]^3 (x-major), no gradients."""
    axis = torch.linspace(-radius, radius, resolution)
    points = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    with torch.no_grad():
        values = torch.cat([fn(p).reshape(-1).float().cpu() for p in points.split(chunk)])
    return values.view(resolution, resolution, resolution)


def signed_distance_grid(inside: np.ndarray, radius: float) -> np.ndarray:
    """Approximate signed distance (negative inside) of the boundary of a boolean lattice."""
    from scipy import ndimage

    voxel = 2.0 * radius / (inside.shape[0] - 1)
    outside_dist = ndimage.distance_transform_edt(~inside)
    inside_dist = ndimage.distance_transform_edt(inside)
    # the surface lies half-way between an inside and an outside lattice point
    return np.where(inside, -(inside_dist - 0.5), outside_dist - 0.5).astype(np.float32) * voxel


def sample_grid(grid: Tensor, points: Tensor, radius: float) -> Tensor:
    """Trilinear lookup of an x-major lattice over [-radius, radius]^3 at points [N, 3]."""
    coords = (points / radius).flip(-1)  # grid_sample wants (x, y, z) = (last, middle, first) axes
    out = F.grid_sample(grid[None, None], coords.view(1, -1, 1, 1, 3), align_corners=True)
    return out.view(-1)


def sdf_from_density(
    nerf: DensityField,
    level: float | None = None,
    *,
    resolution: int = 128,
    steps: int = 300,
    batch: int = 16384,
    generator: torch.Generator,
) -> tuple[SDFField, dict[str, float]]:
    """An SDF field whose zero level set is the NeRF's ``level`` isosurface (by default the
    field's own ``surface_level``); and facts about the fit."""
    level = float(nerf.surface_level) if level is None else level
    device = next(nerf.parameters()).device
    radius = nerf.cfg.radius
    density = field_grid(lambda p: nerf.density(p.to(device)), resolution, radius)
    inside = density.numpy() > level
    target_grid = torch.as_tensor(signed_distance_grid(inside, radius)).to(device)
    field = SDFField(nerf.cfg).to(device)
    field.encoding.load_state_dict(nerf.encoding.state_dict())
    field.albedo_head.load_state_dict(nerf.albedo_head.state_dict())
    teacher_albedo = copy.deepcopy(nerf).eval()
    near_surface = _boundary_points(inside, radius)
    optimizer = torch.optim.Adam(field.parameters(), lr=1e-3, betas=(0.9, 0.99), eps=1e-15)
    truncation = 0.1
    losses = []
    for _ in range(steps):
        pick = torch.randint(len(near_surface), (batch // 2,), generator=generator)
        near = near_surface[pick] + 0.02 * torch.randn(batch // 2, 3, generator=generator)
        uniform = (torch.rand(batch // 2, 3, generator=generator) * 2 - 1) * radius
        points = torch.cat([near, uniform]).clamp(-radius, radius).to(device)
        target = sample_grid(target_grid, points, radius).clamp(-truncation, truncation)
        sdf = field.sdf(points).clamp(-truncation, truncation)
        loss = (sdf - target).abs().mean()
        with torch.no_grad():
            colour = teacher_albedo.albedo(points[: batch // 2])
        loss = loss + F.mse_loss(field.albedo(points[: batch // 2]), colour)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return field, {"fit_loss_start": round(losses[0], 5), "fit_loss_end": round(losses[-1], 5)} if losses else {}


def _boundary_points(inside: np.ndarray, radius: float) -> Tensor:
    """Lattice points where inside meets outside (a few hundred thousand at most)."""
    from scipy import ndimage

    boundary = inside ^ ndimage.binary_erosion(inside)
    idx = np.argwhere(boundary)
    if len(idx) == 0:  # nothing inside: fit the far field only, around the centre
        idx = np.array([[inside.shape[0] // 2] * 3])
    return torch.as_tensor(idx, dtype=torch.float32) * (2 * radius / (inside.shape[0] - 1)) - radius


def dmtet_from_sdf(field: SDFField, grid_resolution: int) -> DMTet:
    """A DMTet on a regular grid over the field's cube, its vertex SDF read from the field."""
    device = next(field.parameters()).device
    dmtet = DMTet(grid_resolution, field.cfg.radius, colour=field).to(device)
    with torch.no_grad():
        sdf = torch.cat([field.sdf(p) for p in dmtet.grid_vertices.split(65536)])
    dmtet.sdf.data.copy_(sdf)
    return dmtet
