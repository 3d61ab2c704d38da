"""The DMTet stage: the NeuS surface as a deformable tetrahedral mesh, rendered by the mesh
renderer (nvdiffrast on CUDA, the PyTorch backend otherwise), shaded and antialiased, distilled
from the prior.

Rasterised renders are sharp where volume renders are soft, so edges and thin parts settle
here. Regularisers (threestudio's DMTet stages): normal consistency between adjacent faces and a
uniform Laplacian on the extracted mesh, which is re-extracted every step.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from dreamer.config import Strict
from dreamer.errors import DreamerError
from dreamer.priors.base import Views
from dreamer.representations.convert import dmtet_from_sdf
from dreamer.representations.dmtet import DMTet
from dreamer.representations.fields import SDFField
from dreamer.representations.mesh import TexturedMesh
from dreamer.representations.mesh_ops import face_pairs, normal_consistency
from dreamer.shading import shade
from dreamer.stages.context import RunContext
from dreamer.stages.distill import DistillConfig, distill
from dreamer.stages.nerf import FieldLearningRates
from renderers.mesh import render_mesh

NonNegative = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]


class DMTetLearningRates(Strict):
    sdf: Positive = 1e-3
    deformation: Positive = 1e-2
    colour: FieldLearningRates = FieldLearningRates()


class DMTetWeights(Strict):
    normal_consistency: NonNegative = 100.0
    laplacian: NonNegative = 100.0


class DMTetConfig(DistillConfig):
    resolution: Annotated[int, Field(gt=0)] = 128
    #: cells per side of the regular grid over the field's cube (6 tetrahedra per cell)
    grid_resolution: Annotated[int, Field(gt=0)] = 48
    lr: DMTetLearningRates = DMTetLearningRates()
    weights: DMTetWeights = DMTetWeights()


def render_dmtet(dmtet: DMTet, views: Views, resolution: int) -> tuple[Tensor, Tensor, Tensor]:
    """The antialiased shaded render [B, H, W, 3] of the current mesh, and its vertices/faces."""
    vertices, faces = dmtet.mesh()
    if len(faces) == 0:
        raise DreamerError(
            "the DMTet surface vanished (no SDF sign change): lower dmtet.lr.sdf or start from a NeuS stage"
        )
    cams = views.cameras
    out = render_mesh(
        vertices,
        faces,
        cams.mvp(resolution, resolution),
        cams.w2c(),
        (resolution, resolution),
        vertex_colors=dmtet.vertex_colours(vertices),
    )
    shaded_and_alpha = torch.cat([shade(out.rgb, out.face_normal_world, out.alpha, views), out.alpha], -1)
    return out.antialias(shaded_and_alpha)[..., :3], vertices, faces


def laplacian_loss(vertices: Tensor, faces: Tensor) -> Tensor:
    """Mean norm of the uniform Laplacian ``v_i - mean(neighbours)`` (threestudio's smoothness)."""
    e = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e = torch.cat([e, e.flip(1)])
    n = len(vertices)
    neighbour_sum = torch.zeros_like(vertices).index_add(0, e[:, 0], vertices[e[:, 1]])
    degree = torch.zeros(n, device=vertices.device).index_add(0, e[:, 0], torch.ones(len(e), device=vertices.device))
    return (vertices - neighbour_sum / degree.clamp_min(1)[:, None]).norm(dim=-1).mean()


def run_dmtet(ctx: RunContext, field: SDFField) -> tuple[DMTet, TexturedMesh]:
    """Train the DMTet started from ``field``; returns it and its final mesh."""
    cfg: DMTetConfig = ctx.cfg.dmtet
    dmtet = dmtet_from_sdf(field, cfg.grid_resolution)
    info = ctx.stage_info.setdefault("dmtet", {})
    with torch.no_grad():
        info["faces_start"] = int(len(dmtet.mesh()[1]))
    lr = cfg.lr
    colour = list(dmtet.colour.encoding.parameters())
    optimizer = torch.optim.Adam(
        [
            {"params": [dmtet.sdf], "lr": lr.sdf},
            {"params": [dmtet.deformation], "lr": lr.deformation},
            {"params": colour, "lr": lr.colour.encoding},
            {"params": list(dmtet.colour.albedo_head.parameters()), "lr": lr.colour.mlp},
        ],
        betas=(0.9, 0.99),
        eps=1e-15,
    )
    faces_seen = [0]

    def step_fn(views: Views, step: int) -> tuple[Tensor, dict[str, Tensor]]:
        image, vertices, faces = render_dmtet(dmtet, views, cfg.resolution)
        faces_seen[0] = len(faces)
        terms: dict[str, Tensor] = {}
        w = cfg.weights
        if w.normal_consistency > 0:
            pairs = torch.as_tensor(face_pairs(faces.cpu().numpy()), device=faces.device)
            terms["normal_consistency"] = w.normal_consistency * normal_consistency(vertices, faces, pairs)
        if w.laplacian > 0:
            terms["laplacian"] = w.laplacian * laplacian_loss(vertices, faces)
        return image, terms

    distill(ctx, "dmtet", cfg, dmtet, optimizer, step_fn, describe=lambda: f"{faces_seen[0]} faces")
    with torch.no_grad():
        vertices, faces = dmtet.mesh()
    info["faces"] = int(len(faces))
    mesh = TexturedMesh(vertices=vertices.cpu().numpy().astype(np.float32), faces=faces.cpu().numpy().astype(np.int64))
    return dmtet, mesh
