"""The NeuS stage: an SDF field rendered like NeuS, started from the NeRF (or a sphere).

The SDF makes the surface well defined (one zero level set, normals from a unit gradient), which
is what the DMTet stage needs to start from. It shares the NeRF's encoding layout and inherits
its weights through :func:`dreamer.representations.convert.sdf_from_density`. Regularisers: the
eikonal loss (``|grad sdf| = 1``), orientation and sparsity as in the NeRF stage.
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field
from torch import Tensor

from dreamer.config import Strict
from dreamer.priors.base import Views
from dreamer.representations.convert import sdf_from_density
from dreamer.representations.fields import DensityField, SDFField
from dreamer.representations.mesh import TexturedMesh
from dreamer.stages.context import RunContext
from dreamer.stages.distill import DistillConfig, distill
from dreamer.stages.nerf import (
    FieldLearningRates,
    NerfWeights,
    VolumeModel,
    VolumeSampling,
    field_isosurface,
    field_optimizer,
    grid_updater,
    render_field,
    volume_regularisers,
)

NonNegative = Annotated[float, Field(ge=0)]
PositiveInt = Annotated[int, Field(gt=0)]


class NeusWeights(NerfWeights):
    orientation: NonNegative = 0.0
    eikonal: NonNegative = 10.0


class SdfInit(Strict):
    """How the SDF starts: fitted to the NeRF's isosurface (``nerf.isosurface``) on a
    ``resolution`` lattice for ``steps`` Adam steps."""

    resolution: PositiveInt = 128
    steps: Annotated[int, Field(ge=0)] = 300


class NeusConfig(DistillConfig):
    sampling: VolumeSampling = VolumeSampling()
    lr: FieldLearningRates = FieldLearningRates()
    weights: NeusWeights = NeusWeights()
    init: SdfInit = SdfInit()
    #: NeuS's cosine annealing: the first steps see a softer, always-positive opacity
    cos_anneal_steps: Annotated[int, Field(ge=0)] = 200
    isosurface_resolution: PositiveInt = 128


def run_neus(ctx: RunContext, nerf: DensityField) -> tuple[SDFField, TexturedMesh]:
    """Train the SDF field started from ``nerf``; returns it and its zero level set."""
    cfg: NeusConfig = ctx.cfg.neus
    info = ctx.stage_info.setdefault("neus", {})
    torch.manual_seed(ctx.seed + 1)
    if (ctx.checkpoints / "neus_last.pt").exists():  # distill restores the fitted, partly trained field
        field = SDFField(nerf.cfg).to(ctx.device)
    else:
        field, facts = sdf_from_density(
            nerf, resolution=cfg.init.resolution, steps=cfg.init.steps, generator=ctx.generator(15)
        )
        info["init"] = {"from": f"NeRF isosurface at density {float(nerf.surface_level):.3g}", **facts}
    model = VolumeModel(field, cfg.sampling, ctx.device)
    grid_gen, jitter = ctx.generator(16), ctx.generator(17)
    update_grid = grid_updater(model, cfg.sampling, grid_gen)
    update_grid(0)

    def step_fn(views: Views, step: int) -> tuple[Tensor, dict[str, Tensor]]:
        field.cos_anneal = min(1.0, step / cfg.cos_anneal_steps) if cfg.cos_anneal_steps else 1.0
        image, rays = render_field(model, views, cfg.resolution, cfg.sampling.samples_per_ray, jitter)
        terms = volume_regularisers(rays, cfg.weights)
        if cfg.weights.eikonal > 0 and rays.weights.numel():
            terms["eikonal"] = cfg.weights.eikonal * ((rays.samples["grad_norm"] - 1.0) ** 2).mean()
        return image, terms

    model.train()
    optimizer = field_optimizer(field, cfg.lr)
    describe = lambda: f"sharpness {float(field.sharpness.detach()):.0f}"  # noqa: E731
    distill(ctx, "neus", cfg, model, optimizer, step_fn, update_grid, describe, (grid_gen, jitter))
    model.eval()
    field.cos_anneal = 1.0
    device = ctx.device
    vertices, faces = field_isosurface(
        lambda p: -field.sdf(p.to(device)), cfg.isosurface_resolution, field.cfg.radius, 0.0
    )
    info["faces"] = int(len(faces))
    return field, TexturedMesh(vertices=vertices, faces=faces)
