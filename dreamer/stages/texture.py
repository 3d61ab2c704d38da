"""The texture stage: UV-unwrap the polished mesh (xatlas, in a subprocess), bake its base
colour from renders of the coarse representation, then optionally refine the texture against the
prior (``refine``, see ``refine_texture``).

Baking runs texel-first: each texel's surface point (from a UV-space rasterisation) is projected
into every bake view, kept where the mesh's own depth map says it is visible, and the render's
colour there is blended with weight ``cos(view angle)^sharpness``. Texels no view saw, and the
padding around UV charts, take the colour of the nearest baked texel, so seams do not bleed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated

import numpy as np
import torch
from pydantic import Field
from torch import Tensor
from tqdm import tqdm

from dreamer.cameras import Cameras, orbit_cameras
from dreamer.config import Strict
from dreamer.export.unwrap import unwrap_uv
from dreamer.representations.mesh import TexturedMesh
from dreamer.stages.context import RunContext
from dreamer.stages.refine_texture import TextureRefineConfig, refine_texture
from renderers.mesh import rasterize_uv, render_mesh, vertex_normals

PositiveInt = Annotated[int, Field(gt=0)]
#: renders [C, H, W, 3] of the coarse representation for the given cameras and size
ColourSource = Callable[[Cameras, int], Tensor]


class TextureConfig(Strict):
    resolution: PositiveInt = 1024
    bake_resolution: PositiveInt = 384
    bake_elevations: tuple[float, ...] = (-35.0, 0.0, 35.0)
    bake_azimuths: PositiveInt = 8
    bake_radius: float = 2.6
    bake_fovy: float = 45.0
    #: weight of a view is cos(angle between the normal and the view ray) ** sharpness
    sharpness: float = 4.0
    unwrap_timeout_s: float = 600.0
    refine: TextureRefineConfig = TextureRefineConfig()


def bake_cameras(cfg: TextureConfig) -> Cameras:
    """Rings of views at the configured elevations, plus straight above and below."""
    el, az = [], []
    for e in cfg.bake_elevations:
        for i in range(cfg.bake_azimuths):
            el.append(e)
            az.append(360.0 * (i + 0.5 * (e != 0)) / cfg.bake_azimuths)
    el += [89.0, -89.0]
    az += [0.0, 0.0]
    return orbit_cameras(el, az, cfg.bake_radius, cfg.bake_fovy)


def texel_surface(mesh: TexturedMesh, resolution: int) -> tuple[Tensor, Tensor, Tensor]:
    """(mask [T, T] bool, points [M, 3], normals [M, 3]) for texels covered by the UV layout."""
    uvs = torch.as_tensor(mesh.uvs)
    faces = torch.as_tensor(mesh.faces)
    verts = torch.as_tensor(mesh.vertices)
    tid, bary = rasterize_uv(uvs, faces, (resolution, resolution))
    mask = tid >= 0
    f = faces[tid[mask]]
    b = bary[mask].float()
    points = (verts[f] * b[..., None]).sum(1)
    vn, _ = vertex_normals(verts, faces)
    normals = torch.nn.functional.normalize((vn[f] * b[..., None]).sum(1), dim=-1)
    return mask, points, normals


def bake(mesh: TexturedMesh, source: ColourSource, cfg: TextureConfig, progress=None) -> tuple[np.ndarray, float]:
    """Texture [T, T, 3] for ``mesh`` (which has uvs) and the fraction of texels seen by some view."""
    T = cfg.resolution
    mask, points, normals = texel_surface(mesh, T)
    cams = bake_cameras(cfg)
    res = cfg.bake_resolution
    verts, faces = torch.as_tensor(mesh.vertices), torch.as_tensor(mesh.faces)
    colour_sum = torch.zeros(points.shape[0], 3)
    weight_sum = torch.zeros(points.shape[0])
    homog = torch.cat([points, torch.ones_like(points[:, :1])], -1)
    for i in tqdm(range(len(cams)), desc="texture: baking", leave=False):
        cam = cams[i]
        with torch.no_grad():
            image = source(cam, res)[0]  # [H, W, 3]
            depth = render_mesh(verts, faces, cam.mvp(res, res), cam.w2c(), (res, res)).depth[0, ..., 0]
        x = homog @ cam.viewmats()[0].T  # OpenCV camera frame: +z forward, +y down
        z = x[:, 2].clamp_min(1e-6)
        K = cam.intrinsics(res, res)[0]
        u = K[0, 0] * x[:, 0] / z + K[0, 2]
        v = K[1, 1] * x[:, 1] / z + K[1, 2]
        col, row = u.long().clamp(0, res - 1), v.long().clamp(0, res - 1)
        on_screen = (u >= 0) & (u < res) & (v >= 0) & (v < res)
        surface_depth = depth[row, col]
        visible = on_screen & (surface_depth > 0) & ((z - surface_depth).abs() < 0.01 + 0.005 * z)
        to_camera = torch.nn.functional.normalize(cam.positions[0] - points, dim=-1)
        cos = (normals * to_camera).sum(-1).clamp_min(0)
        w = cos**cfg.sharpness * visible
        grid = torch.stack([u / res * 2 - 1, v / res * 2 - 1], -1).view(1, 1, -1, 2)
        sampled = torch.nn.functional.grid_sample(
            image.permute(2, 0, 1)[None], grid, mode="bilinear", align_corners=False
        )[0, :, 0].T
        colour_sum += sampled * w[:, None]
        weight_sum += w
        if progress is not None:
            progress(i + 1, len(cams))
    seen = weight_sum > 1e-4
    texture = torch.zeros(T, T, 3)
    values = torch.zeros(points.shape[0], 3)
    values[seen] = colour_sum[seen] / weight_sum[seen, None]
    known = torch.zeros(T, T, dtype=torch.bool)
    idx = mask.nonzero()
    known[idx[seen, 0], idx[seen, 1]] = True
    texture[idx[seen, 0], idx[seen, 1]] = values[seen]
    coverage = float(seen.float().mean()) if len(seen) else 0.0
    return fill_from_nearest(texture.numpy(), known.numpy()), coverage


def fill_from_nearest(texture: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Give every unknown texel the colour of the nearest known one (seam padding and holes)."""
    from scipy import ndimage

    if not known.any():
        return np.full_like(texture, 0.5)
    _, (rows, cols) = ndimage.distance_transform_edt(~known, return_indices=True)
    return texture[rows, cols]


def run_texture(ctx: RunContext, mesh: TexturedMesh, source: ColourSource) -> TexturedMesh:
    cfg = ctx.cfg.texture
    started = time.perf_counter()
    vmapping, faces, uvs = unwrap_uv(
        mesh.vertices, mesh.faces, resolution=cfg.resolution, timeout_s=cfg.unwrap_timeout_s
    )
    unwrapped = TexturedMesh(mesh.vertices[vmapping], faces, uvs=uvs, texture=np.zeros((1, 1, 3), np.float32))
    ctx.report("texture", 0, 1, started, f"unwrapped into {len(uvs)} vertices")
    views = len(bake_cameras(cfg))
    total = views + cfg.refine.steps  # one count for baking and refining: progress never goes back
    texture, coverage = bake(
        unwrapped, source, cfg, progress=lambda i, n: ctx.report("texture", i, total, started, "baking")
    )
    info = ctx.stage_info.setdefault("texture", {})
    info.update(texel_coverage=round(coverage, 4), resolution=cfg.resolution)
    baked = unwrapped.copy(texture=texture.astype(np.float32))
    if cfg.refine.steps == 0:
        return baked
    refined, facts = refine_texture(
        ctx, baked, cfg.refine, lambda step: ctx.report("texture", views + step, total, started, "refining")
    )
    info.update(facts)
    return baked.copy(texture=refined)
