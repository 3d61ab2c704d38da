"""The NeRF stage, first of the progressive route: a density field grown from a blob, rendered
by volume rendering with shading, distilled from the prior.

A NeRF is the stable start: density can appear and vanish anywhere, so the coarse shape (and
topology: a cup's hollow, a chair's gaps) settles here before an SDF makes the surface precise.
Regularisers (DreamFusion/threestudio): orientation (visible normals must not face away from the
camera), sparsity (no fog) and opacity entropy (rays either hit or miss).
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from dreamer.cameras import orbit_cameras
from dreamer.config import Strict
from dreamer.errors import DreamerError
from dreamer.priors.base import Views
from dreamer.representations.convert import field_grid
from dreamer.representations.fields import DensityField, FieldConfig, ImplicitField
from dreamer.representations.mesh import TexturedMesh
from dreamer.shading import shade
from dreamer.stages.context import RunContext
from dreamer.stages.distill import DistillConfig, distill
from dreamer.stages.extract import marching_cubes
from renderers.volume import OccupancyGrid, RayRender, camera_rays, ray_sphere, render_rays

NonNegative = Annotated[float, Field(ge=0)]
PositiveInt = Annotated[int, Field(gt=0)]


class BlobConfig(Strict):
    """Magic3D's initial density bias ``strength * (1 - |x| / radius)``."""

    strength: NonNegative = 10.0
    radius: Annotated[float, Field(gt=0)] = 0.5


class VolumeSampling(Strict):
    samples_per_ray: PositiveInt = 64
    #: occupancy grid that skips empty space (cells per side) and how often it is refreshed
    grid_resolution: PositiveInt = 32
    grid_update_every: PositiveInt = 16
    #: dense = any device; nerfacc = nerfacc's OccGridEstimator (CUDA); auto = nerfacc on CUDA
    sampler: Literal["auto", "dense", "nerfacc"] = "auto"


class FieldLearningRates(Strict):
    encoding: Annotated[float, Field(gt=0)] = 0.01
    mlp: Annotated[float, Field(gt=0)] = 0.001


class NerfWeights(Strict):
    orientation: NonNegative = 10.0
    sparsity: NonNegative = 1.0
    opaque: NonNegative = 0.0


class IsosurfaceConfig(Strict):
    """How the stage's surface is meshed (for the next stage and for scoring). ``auto`` takes the
    density where rays' transmittance falls to one half (the median over views), so the surface
    sits where the renders show it whatever density scale training settled on."""

    level: Annotated[float, Field(gt=0)] | Literal["auto"] = "auto"
    resolution: PositiveInt = 128


class NerfConfig(DistillConfig):
    field: FieldConfig = FieldConfig()
    blob: BlobConfig = BlobConfig()
    sampling: VolumeSampling = VolumeSampling()
    lr: FieldLearningRates = FieldLearningRates()
    weights: NerfWeights = NerfWeights()
    isosurface: IsosurfaceConfig = IsosurfaceConfig()


class VolumeModel(torch.nn.Module):
    """What a volume stage optimises and checkpoints: the field and its occupancy grid (ours for
    the dense sampler, nerfacc's ``OccGridEstimator`` for the nerfacc one)."""

    def __init__(self, field: ImplicitField, sampling: VolumeSampling, device: torch.device):
        super().__init__()
        self.field = field
        self.sampler = _sampler(sampling.sampler, device)
        r = field.cfg.radius
        if self.sampler == "nerfacc":
            from nerfacc import OccGridEstimator

            self.grid = OccGridEstimator([-r, -r, -r, r, r, r], resolution=sampling.grid_resolution)
        else:
            self.grid = OccupancyGrid(sampling.grid_resolution, r)
        self.to(device)

    def occupied_fraction(self) -> float:
        occupied = self.grid.occupied if self.sampler == "dense" else self.grid.binaries
        return float(occupied.float().mean())


def field_optimizer(field: ImplicitField, lr: FieldLearningRates) -> torch.optim.Adam:
    """threestudio's pattern: a fast hash grid, slow MLPs; eps tiny because hash gradients are."""
    encoding = list(field.encoding.parameters())
    ids = {id(p) for p in encoding}
    rest = [p for p in field.parameters() if id(p) not in ids]
    groups = [{"params": encoding, "lr": lr.encoding}, {"params": rest, "lr": lr.mlp}]
    return torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-15)


def render_field(
    model: VolumeModel, views: Views, resolution: int, samples_per_ray: int, generator: torch.Generator | None
) -> tuple[Tensor, RayRender]:
    """The shaded render [B, H, W, 3] of the batch and the per-ray/per-sample result."""
    cams = views.cameras
    origins, dirs = camera_rays(cams.c2w, cams.fovy_deg, resolution, resolution)
    dense = model.sampler == "dense"
    rays = render_rays(
        model.field.alpha,
        origins.reshape(-1, 3),
        dirs.reshape(-1, 3),
        radius=model.field.cfg.radius,
        num_samples=samples_per_ray,
        grid=model.grid if dense else None,
        generator=generator,
        sampler=model.sampler,
        estimator=None if dense else model.grid,
    )
    shape = (len(cams), resolution, resolution)
    opacity = rays.opacity.view(*shape, 1)
    # shade() wants plain albedo: the composited sum over the opacity is its weighted mean
    albedo = (rays.values["albedo"] / rays.opacity.clamp_min(1e-6)).view(*shape, 3)
    normal = torch.nn.functional.normalize(rays.values["normal"], dim=-1).view(*shape, 3)
    return shade(albedo, normal, opacity, views), rays


def _sampler(kind: str, device: torch.device) -> str:
    if kind == "auto":
        return "nerfacc" if device.type == "cuda" else "dense"
    return kind


def volume_regularisers(rays: RayRender, weights: NerfWeights) -> dict[str, Tensor]:
    terms: dict[str, Tensor] = {}
    if weights.orientation > 0:
        facing_away = (rays.samples["normal"] * rays.dirs).sum(-1).clamp_min(0.0) ** 2
        hit = (rays.opacity > 0).sum().clamp_min(1)
        terms["orientation"] = weights.orientation * (rays.weights.detach() * facing_away).sum() / hit
    if weights.sparsity > 0:
        terms["sparsity"] = weights.sparsity * (rays.opacity**2 + 0.01).sqrt().mean()
    if weights.opaque > 0:
        o = rays.opacity.clamp(1e-3, 1 - 1e-3)
        terms["opaque"] = weights.opaque * torch.nn.functional.binary_cross_entropy(o, o)
    return terms


def grid_updater(model: VolumeModel, sampling: VolumeSampling, generator: torch.Generator):
    """``after_step`` hook: refresh the occupancy grid with the opacity over one render step."""
    step = 2.0 * model.field.cfg.radius / sampling.samples_per_ray

    def occupancy(points: Tensor) -> Tensor:
        return model.field.occupancy(points, step)

    def update(done: int) -> None:
        if model.sampler == "nerfacc":  # nerfacc keeps its own schedule (every n steps, after warm-up)
            model.grid.update_every_n_steps(done, occupancy, n=sampling.grid_update_every)
        elif done % sampling.grid_update_every == 0:
            model.grid.update(occupancy, generator)

    return update


def field_isosurface(fn, resolution: int, radius: float, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Mesh of ``{x : fn(x) = level}`` over the field's cube, where ``fn`` is high inside."""
    return marching_cubes(field_grid(fn, resolution, radius).numpy(), level, radius)


def nerf_isosurface(field: DensityField, iso: IsosurfaceConfig) -> TexturedMesh:
    """The field's surface at ``iso.level``, which is also stored in the field (the NeuS stage
    starts from that same surface)."""
    device = next(field.parameters()).device
    level = surface_density(field) if iso.level == "auto" else iso.level
    field.surface_level.fill_(level)
    vertices, faces = field_isosurface(lambda p: field.density(p.to(device)), iso.resolution, field.cfg.radius, level)
    return TexturedMesh(vertices=vertices, faces=faces)


@torch.no_grad()
def surface_density(field: DensityField, views: int = 8, resolution: int = 32, samples: int = 128) -> float:
    """Median density at the point where the transmittance of opaque rays drops to one half."""
    cams = orbit_cameras([30.0, -20.0] * (views // 2), [360.0 * i / views for i in range(views)], 2.6, 45.0)
    device = next(field.parameters()).device
    origins, dirs = (t.reshape(-1, 3).to(device) for t in camera_rays(cams.c2w, cams.fovy_deg, resolution, resolution))
    radius = field.cfg.radius
    near, far, hit = ray_sphere(origins, dirs, radius)
    origins, dirs, near, far = origins[hit], dirs[hit], near[hit], far[hit]
    t = near[:, None] + (far - near)[:, None] * (torch.arange(samples, device=device) + 0.5) / samples
    points = (origins[:, None] + dirs[:, None] * t[..., None]).reshape(-1, 3)
    sigma = torch.cat([field.density(chunk) for chunk in points.split(65536)]).view(-1, samples)
    transmittance = torch.exp(-torch.cumsum(sigma * ((far - near) / samples)[:, None], 1))
    opaque = transmittance[:, -1] < 0.1
    if not opaque.any():
        raise DreamerError("the NeRF stage ended with no opaque surface: give it more steps or a stronger prior")
    first = (transmittance[opaque] < 0.5).float().argmax(1)
    return float(sigma[opaque].gather(1, first[:, None]).median())


def run_nerf(ctx: RunContext) -> tuple[DensityField, TexturedMesh]:
    """Train the density field; returns it and its isosurface (``isosurface.level``)."""
    cfg: NerfConfig = ctx.cfg.nerf
    torch.manual_seed(ctx.seed)  # the field's initial weights
    field = DensityField(cfg.field, cfg.blob.strength, cfg.blob.radius)
    model = VolumeModel(field, cfg.sampling, ctx.device)
    grid_gen, jitter = ctx.generator(13), ctx.generator(14)
    update_grid = grid_updater(model, cfg.sampling, grid_gen)
    update_grid(0)

    def step_fn(views: Views, step: int) -> tuple[Tensor, dict[str, Tensor]]:
        image, rays = render_field(model, views, cfg.resolution, cfg.sampling.samples_per_ray, jitter)
        return image, volume_regularisers(rays, cfg.weights)

    model.train()
    optimizer = field_optimizer(field, cfg.lr)
    describe = lambda: f"{model.occupied_fraction():.0%} of space occupied"  # noqa: E731
    distill(ctx, "nerf", cfg, model, optimizer, step_fn, update_grid, describe, (grid_gen, jitter))
    model.eval()
    mesh = nerf_isosurface(field, cfg.isosurface)
    info = ctx.stage_info.setdefault("nerf", {})
    info["surface_density"] = round(float(field.surface_level), 4)
    info["faces"] = int(len(mesh.faces))
    return field, mesh
