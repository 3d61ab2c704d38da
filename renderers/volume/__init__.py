"""Volume rendering of neural fields: camera rays, samples along them, compositing.

Plain tensors in, plain tensors out; this package never imports ``dreamer``. A field enters as an
``alpha_fn(points, dirs, deltas) -> (alpha [N], attributes {name: [N, K]})``, so a density field
(NeRF, ``alpha = 1 - exp(-sigma * delta)``) and an SDF rendered like NeuS share every line here.

Two samplers, one result:

* ``dense`` (any device): stratified samples between the ray's entry into and exit from the
  scene's bounding sphere. An :class:`OccupancyGrid` marks empty space, and the field is evaluated
  only at samples inside occupied cells; the rest keep alpha 0. Compositing is nerfacc's dense
  ``render_weight_from_alpha`` (a cumulative product, plain PyTorch).
* ``nerfacc`` (CUDA): nerfacc's ``OccGridEstimator`` marches only occupied cells and returns packed
  samples, composited by nerfacc's packed kernels.

Either way the result holds the composited attributes per ray and the per-sample weights and
attributes that losses (orientation, eikonal) need.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from nerfacc.volrend import render_weight_from_alpha
from torch import Tensor

AlphaFn = Callable[[Tensor, Tensor, Tensor], tuple[Tensor, dict[str, Tensor]]]
Sampler = Literal["dense", "nerfacc"]

__all__ = ["AlphaFn", "OccupancyGrid", "RayRender", "camera_rays", "density_to_alpha", "ray_sphere", "render_rays"]


def camera_rays(c2w: Tensor, fovy_deg: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """World-space origins and unit directions [C, H, W, 3] through pixel centres; row 0 = top,
    OpenGL camera frame (the camera looks along -z), as the mesh renderer's images."""
    focal = 0.5 * height / torch.tan(torch.deg2rad(fovy_deg.float()) * 0.5)  # [C]
    ys = torch.arange(height, device=c2w.device, dtype=torch.float32) + 0.5 - height * 0.5
    xs = torch.arange(width, device=c2w.device, dtype=torch.float32) + 0.5 - width * 0.5
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    d_cam = torch.stack(
        [
            x[None] / focal[:, None, None],
            -y[None] / focal[:, None, None],
            -torch.ones_like(x)[None].expand(len(c2w), -1, -1),
        ],
        -1,
    )
    d_world = torch.einsum("cij,chwj->chwi", c2w[:, :3, :3].float(), d_cam)
    d_world = torch.nn.functional.normalize(d_world, dim=-1)
    origins = c2w[:, None, None, :3, 3].float().expand_as(d_world)
    return origins, d_world


def ray_sphere(origins: Tensor, dirs: Tensor, radius: float) -> tuple[Tensor, Tensor, Tensor]:
    """Entry and exit distances [R] of unit-direction rays through the origin-centred sphere, and
    whether they hit it [R] bool (misses get near = far = 0)."""
    b = (origins * dirs).sum(-1)
    c = (origins * origins).sum(-1) - radius**2
    disc = b * b - c
    hit = disc > 0
    root = disc.clamp_min(0).sqrt()
    near = (-b - root).clamp_min(0) * hit
    far = (-b + root).clamp_min(0) * hit
    return near, far, hit & (far > near)


class OccupancyGrid(torch.nn.Module):
    """Which cells of the cube [-bound, bound]^3 hold something, kept up to date from the field.

    Like nerfacc's estimator: each update evaluates the field's opacity over one step at a
    jittered point per cell, keeps the larger of that and the decayed old value, and marks cells
    above ``threshold`` (or the mean, if that is lower), and their neighbours, as occupied. Before
    the first update everything is occupied, so nothing is skipped that might matter.
    """

    def __init__(self, resolution: int = 32, bound: float = 1.0, threshold: float = 0.01, decay: float = 0.95):
        super().__init__()
        self.resolution, self.bound, self.threshold, self.decay = resolution, bound, threshold, decay
        self.register_buffer("occupancy", torch.zeros(resolution**3))
        self.register_buffer("occupied", torch.ones(resolution**3, dtype=torch.bool))

    def cell_centres(self, generator: torch.Generator | None = None) -> Tensor:
        r = self.resolution
        idx = torch.arange(r**3)
        ijk = torch.stack([idx // (r * r), (idx // r) % r, idx % r], -1).float()
        offset = torch.rand(r**3, 3, generator=generator) if generator is not None else torch.full((r**3, 3), 0.5)
        return ((ijk + offset) / r * 2.0 - 1.0) * self.bound

    @torch.no_grad()
    def update(self, occupancy_fn: Callable[[Tensor], Tensor], generator: torch.Generator | None = None) -> None:
        """``occupancy_fn(points [N, 3]) -> [N]`` opacity over one render step at those points."""
        points = self.cell_centres(generator).to(self.occupancy.device)
        fresh = torch.cat([occupancy_fn(chunk).reshape(-1) for chunk in points.split(65536)])
        self.occupancy.copy_(torch.maximum(self.occupancy * self.decay, fresh))
        occupied = (self.occupancy > min(self.threshold, float(self.occupancy.mean()))).float()
        # grown by one cell: a surface that crosses a cell without touching its sample point is
        # still inside the grown region, so skipping never cuts a surface away
        r = self.resolution
        grown = torch.nn.functional.max_pool3d(occupied.view(1, 1, r, r, r), 3, stride=1, padding=1)
        self.occupied.copy_(grown.view(-1) > 0)

    def contains(self, points: Tensor) -> Tensor:
        """[N] bool: the points lie in occupied cells (points outside the cube never do)."""
        r = self.resolution
        ijk = ((points / self.bound + 1.0) * 0.5 * r).floor().long()
        inside = ((ijk >= 0) & (ijk < r)).all(-1)
        ijk = ijk.clamp(0, r - 1)
        return inside & self.occupied[(ijk[:, 0] * r + ijk[:, 1]) * r + ijk[:, 2]]


@dataclass
class RayRender:
    """Per ray: ``opacity`` [R, 1], ``depth`` [R, 1] (distance along the ray, opacity-weighted) and
    ``values`` {name: [R, K]} (weighted sums of the field's [N, K] attributes; [N] ones, such as
    an SDF value, stay per sample). Per evaluated sample: ``weights`` [N],
    ``ray_indices`` [N], ``samples`` {name: [N, K]} as the field returned them, ``dirs`` [N, 3]."""

    opacity: Tensor
    depth: Tensor
    values: dict[str, Tensor]
    weights: Tensor
    ray_indices: Tensor
    samples: dict[str, Tensor]
    dirs: Tensor


def render_rays(
    alpha_fn: AlphaFn,
    origins: Tensor,
    dirs: Tensor,
    *,
    radius: float,
    num_samples: int,
    grid: OccupancyGrid | None = None,
    generator: torch.Generator | None = None,
    sampler: Sampler = "dense",
    estimator: object | None = None,
) -> RayRender:
    """Render R rays ([R, 3] origins and unit directions) through a field.

    ``num_samples`` sets the step: ``2 * radius / num_samples`` (so a ray through the centre gets
    that many). ``generator`` jitters samples (training); without it they sit at step centres.
    ``sampler="nerfacc"`` needs a CUDA ``nerfacc.OccGridEstimator`` as ``estimator``.
    """
    if sampler == "nerfacc":
        return _render_nerfacc(alpha_fn, origins, dirs, radius, num_samples, estimator, generator is not None)
    R = origins.shape[0]
    step = 2.0 * radius / num_samples
    near, far, hit = ray_sphere(origins, dirs, radius)
    jitter = (
        torch.rand(R, num_samples, generator=generator) if generator is not None else torch.full((R, num_samples), 0.5)
    )
    t_starts = near[:, None] + step * torch.arange(num_samples, device=origins.device)[None]
    t_mid = t_starts + step * jitter.to(origins.device)
    keep = hit[:, None] & (t_mid < far[:, None])
    points = origins[:, None] + dirs[:, None] * t_mid[..., None]
    if grid is not None:
        keep = keep & grid.contains(points.reshape(-1, 3)).view(R, num_samples)
    ray_indices, sample_indices = keep.nonzero(as_tuple=True)
    sample_dirs = dirs[ray_indices]
    deltas = torch.full(ray_indices.shape, step, device=origins.device)
    alpha, samples = alpha_fn(points[ray_indices, sample_indices], sample_dirs, deltas)
    dense_alpha = torch.zeros(R, num_samples, device=origins.device, dtype=alpha.dtype)
    dense_alpha = dense_alpha.index_put((ray_indices, sample_indices), alpha)
    weights_dense, _ = render_weight_from_alpha(dense_alpha)
    weights = weights_dense[ray_indices, sample_indices]
    return _accumulate(weights, ray_indices, t_mid[ray_indices, sample_indices], samples, sample_dirs, R)


def _render_nerfacc(alpha_fn: AlphaFn, origins, dirs, radius, num_samples, estimator, stratified: bool) -> RayRender:
    """CUDA path: nerfacc's occupancy-grid marching and packed compositing."""
    if estimator is None:
        raise ValueError("sampler='nerfacc' needs a nerfacc.OccGridEstimator")
    step = 2.0 * radius / num_samples

    def sampling_alpha(t_starts: Tensor, t_ends: Tensor, ray_indices: Tensor) -> Tensor:
        t = (t_starts + t_ends)[:, None] * 0.5
        return alpha_fn(origins[ray_indices] + dirs[ray_indices] * t, dirs[ray_indices], t_ends - t_starts)[0]

    near, far, _ = ray_sphere(origins, dirs, radius)
    ray_indices, t_starts, t_ends = estimator.sampling(
        origins, dirs, alpha_fn=sampling_alpha, t_min=near, t_max=far, render_step_size=step, stratified=stratified
    )
    t_mid = (t_starts + t_ends) * 0.5
    sample_dirs = dirs[ray_indices]
    alpha, samples = alpha_fn(origins[ray_indices] + sample_dirs * t_mid[:, None], sample_dirs, t_ends - t_starts)
    weights, _ = render_weight_from_alpha(alpha, ray_indices=ray_indices, n_rays=origins.shape[0])
    return _accumulate(weights, ray_indices, t_mid, samples, sample_dirs, origins.shape[0])


def _accumulate(
    weights: Tensor, ray_indices: Tensor, t_mid: Tensor, samples: dict[str, Tensor], dirs: Tensor, R: int
) -> RayRender:
    def ray_sum(v: Tensor) -> Tensor:
        return torch.zeros(R, v.shape[-1], device=v.device, dtype=v.dtype).index_add(
            0, ray_indices, weights[:, None] * v
        )

    return RayRender(
        opacity=ray_sum(torch.ones_like(weights)[:, None]),
        depth=ray_sum(t_mid[:, None]),
        values={name: ray_sum(v) for name, v in samples.items() if v.dim() == 2},
        weights=weights,
        ray_indices=ray_indices,
        samples=samples,
        dirs=dirs,
    )


def density_to_alpha(sigma: Tensor, deltas: Tensor) -> Tensor:
    """Opacity of a segment of length ``deltas`` in a medium of density ``sigma``."""
    return 1.0 - torch.exp(-sigma * deltas)
