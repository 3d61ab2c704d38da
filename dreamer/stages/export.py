"""The export stage: the files a user opens (GLB, OBJ+MTL+PNG, Gaussians PLY) and a preview.

The preview is rendered from the exported mesh itself, not from the Gaussians, so what it shows
is what the user gets.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import Tensor

from dreamer.cameras import orbit_cameras
from dreamer.config import Strict
from dreamer.export.images import image_grid, save_image
from dreamer.export.mesh_export import save_glb, save_obj
from dreamer.representations.gaussians import Gaussians
from dreamer.representations.mesh import TexturedMesh
from dreamer.stages.context import RunContext
from renderers.mesh import render_mesh

Format = Literal["glb", "obj", "ply"]


class ExportConfig(Strict):
    formats: tuple[Format, ...] = ("glb", "obj", "ply")
    preview_size: Annotated[int, Field(gt=0)] = 256


def render_preview(mesh: TexturedMesh, size: int) -> Tensor:
    """Front, side, back and overhead views of the mesh over white, as one [2H, 2W, 3] image."""
    cams = orbit_cameras([10.0, 10.0, 10.0, 60.0], [0.0, 90.0, 180.0, 30.0], radius=2.6, fovy_deg=45.0)
    as_t = lambda a: None if a is None else torch.as_tensor(a)
    with torch.no_grad():
        out = render_mesh(
            as_t(mesh.vertices),
            as_t(mesh.faces),
            cams.mvp(size, size),
            cams.w2c(),
            (size, size),
            vertex_colors=as_t(mesh.vertex_colors),
            uvs=as_t(mesh.uvs),
            texture=as_t(mesh.texture),
            background=torch.ones(len(cams), 3),
        )
        # a little headlight shading so the shape reads in the preview
        shade = 0.55 + 0.45 * out.normal_cam[..., 2:3].abs()
        image = out.rgb * (shade * out.alpha + (1 - out.alpha))
    return image_grid(list(image), columns=2)


def run_export(ctx: RunContext, mesh: TexturedMesh, gaussians: Gaussians | None) -> list[Path]:
    cfg = ctx.cfg.export
    started = time.perf_counter()
    written: list[Path] = []
    if "glb" in cfg.formats:
        written.append(save_glb(mesh, ctx.out / "model.glb"))
    if "obj" in cfg.formats:
        written += save_obj(mesh, ctx.out / "model.obj")
    if "ply" in cfg.formats and gaussians is not None:
        gaussians.save_ply(ctx.out / "gaussians.ply")
        written.append(ctx.out / "gaussians.ply")
    preview = save_image(render_preview(mesh, cfg.preview_size), ctx.out / "preview.png")
    written.append(preview)
    ctx.report("export", 1, 1, started, "files written", preview)
    return written
