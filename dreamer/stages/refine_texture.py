"""Texture refinement: optimise the baked texture of the fixed (polished) mesh against the prior.

Baking copies what the coarse representation showed, blur and all; here the texture is the
parameter, rendered through the differentiable mesh renderer at a higher resolution than the
coarse stage and pulled by the run's objective (SDS by default; DSD or VSD by preset).

The parameter is a correction at ``detail`` texels per side, upsampled onto the baked texture:
a 1024-texel texture seen in 256-pixel renders gets gradients on a few texels per pixel, and
Adam, which normalises each parameter's steps, would turn those sparse gradients into noise.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field
from tqdm import tqdm

from dreamer.cameras import sample_orbit_cameras
from dreamer.config import Strict
from dreamer.objectives.sds import SDSConfig
from dreamer.objectives.select import ObjectiveConfig, build_objective
from dreamer.priors.base import Views
from dreamer.representations.mesh import TexturedMesh
from dreamer.stages.coarse import sample_backgrounds
from dreamer.stages.context import RunContext
from renderers.mesh import render_mesh

Range = tuple[float, float]


class TextureRefineConfig(Strict):
    #: 0 keeps the baked texture as it is
    steps: Annotated[int, Field(ge=0)] = 0
    batch_size: Annotated[int, Field(gt=0)] = 2
    resolution: Annotated[int, Field(gt=0)] = 256
    elevation: Range = (-30.0, 60.0)
    radius: Range = (2.4, 2.8)
    fovy: Range = (40.0, 45.0)
    background: Literal["random", "random_grey", "grey"] = "random"
    objective: ObjectiveConfig = Field(default_factory=lambda: SDSConfig())
    lr: Annotated[float, Field(gt=0)] = 0.006
    #: side of the correction grid (about the render's resolution; see the module doc)
    detail: Annotated[int, Field(gt=0)] = 256
    max_seconds: Annotated[float, Field(gt=0)] | None = None


def refine_texture(
    ctx: RunContext, mesh: TexturedMesh, cfg: TextureRefineConfig, progress: Callable[[int], None] | None = None
) -> tuple[np.ndarray, dict]:
    """The refined texture [T, T, 3] of ``mesh`` (which has uvs and a baked texture), and facts.

    ``progress(step)`` is called after each step (the texture stage folds it into its own count).
    """
    objective = build_objective(ctx.prior, cfg.objective)
    prompt = ctx.embedded_prompt
    gen = ctx.generator(11)
    dev = ctx.device
    verts = torch.as_tensor(mesh.vertices, device=dev)
    faces = torch.as_tensor(mesh.faces, device=dev)
    uvs = torch.as_tensor(mesh.uvs, device=dev)
    baked = torch.as_tensor(mesh.texture, device=dev).permute(2, 0, 1).unsqueeze(0)  # [1, 3, T, T]
    correction = torch.nn.Parameter(torch.zeros(1, 3, cfg.detail, cfg.detail, device=dev))
    optimizer = torch.optim.Adam([correction], lr=cfg.lr)

    def current() -> torch.Tensor:
        up = torch.nn.functional.interpolate(correction, size=baked.shape[-2:], mode="bilinear", align_corners=False)
        return (baked + up).clamp(0.0, 1.0)[0].permute(1, 2, 0)

    res = cfg.resolution
    started = time.perf_counter()
    info: dict = {}
    for step in tqdm(range(cfg.steps), desc="texture: refining", leave=False):
        if step and cfg.max_seconds is not None and time.perf_counter() - started > cfg.max_seconds:
            info["refine_stopped_at_step"] = step
            break
        cams = sample_orbit_cameras(cfg.batch_size, gen, cfg.elevation, cfg.radius, cfg.fovy).to(dev)
        background = sample_backgrounds(cfg.background, cfg.batch_size, gen).to(dev)
        out = render_mesh(
            verts, faces, cams.mvp(res, res), cams.w2c(), (res, res), uvs=uvs, texture=current(), background=background
        )
        # antialiased like the reference's silhouettes, so rim texels are not pulled toward the
        # random background that an aliased render would compare against a blended one
        result = objective(out.antialias(out.rgb), Views(cams, background), prompt, step, cfg.steps, gen)
        optimizer.zero_grad(set_to_none=True)
        result.loss.backward()
        optimizer.step()
        if progress is not None:
            progress(step + 1)
    info["refine_steps"] = cfg.steps if "refine_stopped_at_step" not in info else info["refine_stopped_at_step"]
    with torch.no_grad():
        return current().cpu().numpy().astype(np.float32), info
