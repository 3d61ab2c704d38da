"""Mesh extraction: Gaussians -> density grid -> marching cubes -> clean, smooth, decimated mesh.

A fixed density threshold is the classic failure here: as Gaussians flatten and thin parts are
covered by few of them, a threshold that suits the body eats the legs. So the iso-level is
calibrated: each candidate level's mesh is rendered from a ring of views and compared with the
Gaussians' own silhouettes, and the level whose silhouettes agree best (IoU) wins.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor
from tqdm import tqdm

from dreamer.cameras import orbit_cameras
from dreamer.config import Strict
from dreamer.errors import DreamerError
from dreamer.representations.gaussians import Gaussians
from dreamer.representations.mesh import TexturedMesh
from dreamer.stages.context import RunContext
from renderers.mesh import render_mesh

PositiveInt = Annotated[int, Field(gt=0)]


class ExtractConfig(Strict):
    grid_resolution: PositiveInt = 160
    #: the grid spans [-bound, bound]^3 (objects live inside the unit ball)
    bound: float = 1.05
    level: float | Literal["auto"] = "auto"
    #: candidate levels of the automatic calibration
    candidate_levels: tuple[float, ...] = (0.005, 0.01, 0.015, 0.02, 0.03, 0.045, 0.065, 0.09, 0.13, 0.2)
    #: a pixel belongs to the Gaussians' silhouette where their alpha exceeds this
    silhouette_alpha: float = 0.1
    calibration_views: PositiveInt = 16
    calibration_resolution: PositiveInt = 128
    #: pores up to about twice this many voxels wide are sealed before enclosed pockets are
    #: filled: score distillation leaves Gaussians on a porous shell, and through its pores the
    #: hollow inside would be meshed as a second, inner surface (0 = fill only sealed pockets)
    seal_voxels: Annotated[int, Field(ge=0)] = 0
    #: components smaller than this fraction of the total area are floaters
    min_component_fraction: float = 0.01
    smooth_iterations: Annotated[int, Field(ge=0)] = 10
    target_faces: PositiveInt = 30_000


def density_grid(
    gaussians: Gaussians, resolution: int, bound: float, blur: float = 1.0, max_pairs: int = 4_000_000
) -> Tensor:
    """[R, R, R] (x, y, z indexing) sum of opacity-weighted Gaussian kernels at the grid points.

    Gaussians smaller than a voxel would fall between grid points and leave the field porous, so
    each kernel is widened by ``blur`` voxels (its covariance plus (blur * voxel)^2 I, its peak
    lowered to keep its mass): the field is band-limited to what the grid can hold.
    Each Gaussian only touches the voxels within three standard deviations of its centre;
    Gaussians are bucketed by footprint so every chunk is one vectorised gather.
    """
    with torch.no_grad():
        device = gaussians.means.device
        means = gaussians.means.detach()
        voxel = 2 * bound / (resolution - 1)
        cov = gaussians.covariances().detach()
        wide = cov + (blur * voxel) ** 2 * torch.eye(3, device=device)
        inv_cov = torch.linalg.inv(wide)
        mass_kept = torch.sqrt(torch.linalg.det(cov).clamp_min(0) / torch.linalg.det(wide))
        opac = gaussians.opacities.detach() * mass_kept
        sigma_max = torch.linalg.eigvalsh(wide)[:, -1].sqrt()
        half = torch.ceil(3.0 * sigma_max / voxel).long().clamp(1, resolution // 4)
        centre = torch.round((means + bound) / voxel).long()
        grid = torch.zeros(resolution**3, device=device)
        for k in torch.unique(half).tolist():
            idx = (half == k).nonzero().squeeze(1)
            r = torch.arange(-k, k + 1, device=device)
            offsets = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).view(-1, 3)
            per_chunk = max(1, max_pairs // offsets.shape[0])
            for chunk in idx.split(per_chunk):
                cells = centre[chunk, None, :] + offsets[None]  # [n, K, 3]
                inside = ((cells >= 0) & (cells < resolution)).all(-1)
                d = cells.float() * voxel - bound - means[chunk, None, :]
                maha = torch.einsum("nki,nij,nkj->nk", d, inv_cov[chunk], d)
                value = opac[chunk, None] * torch.exp(-0.5 * maha) * inside
                flat = (
                    cells.clamp(0, resolution - 1) * torch.tensor([resolution**2, resolution, 1], device=device)
                ).sum(-1)
                grid.index_add_(0, flat.view(-1), value.view(-1))
        return grid.view(resolution, resolution, resolution)


def fill_interior(grid: np.ndarray, level: float, seal_voxels: int = 0) -> np.ndarray:
    """Raise enclosed pockets below ``level`` above it, so only the outer surface is meshed
    (whatever the coarse stage left inside the object never becomes a surface of its own).

    With ``seal_voxels`` the occupancy is first closed (dilated, then eroded) by that many
    voxels, so a pocket reached from outside only through narrow pores counts as enclosed too.
    """
    from scipy import ndimage

    occupied = grid > level
    sealed = occupied
    if seal_voxels:
        pad = seal_voxels + 1  # closing erodes from the border: keep the object clear of it
        cross = ndimage.generate_binary_structure(3, 1)
        closed = ndimage.binary_closing(np.pad(occupied, pad), structure=cross, iterations=seal_voxels)
        sealed = closed[(slice(pad, -pad),) * 3]
    pockets = ndimage.binary_fill_holes(sealed) & ~occupied
    return np.where(pockets, 2.0 * level, grid)


def marching_cubes(
    grid: np.ndarray, level: float, bound: float, seal_voxels: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Vertices in scene space and outward-facing triangles of the ``level`` iso-surface."""
    import mcubes

    verts, faces = mcubes.marching_cubes(fill_interior(grid, level, seal_voxels), level)
    if len(faces) == 0:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)
    res = grid.shape[0]
    verts = verts * (2 * bound / (res - 1)) - bound
    faces = faces.astype(np.int64)
    # density is high inside: make the triangles face outward (positive signed volume)
    v = verts[faces]
    if np.einsum("ij,ij->i", v[:, 0], np.cross(v[:, 1], v[:, 2])).sum() < 0:
        faces = faces[:, ::-1].copy()
    return verts.astype(np.float32), faces


def silhouette_iou(vertices: np.ndarray, faces: np.ndarray, cams, masks: Tensor, res: int) -> float:
    """Mean IoU between the mesh's coverage and the target masks [C, H, W] (bool)."""
    if len(faces) == 0:
        return 0.0
    v = torch.as_tensor(vertices)
    f = torch.as_tensor(faces)
    out = render_mesh(v, f, cams.mvp(res, res), cams.w2c(), (res, res))
    cover = out.alpha[..., 0] > 0.5
    inter = (cover & masks).flatten(1).sum(1).float()
    union = (cover | masks).flatten(1).sum(1).float().clamp_min(1)
    return float((inter / union).mean())


def calibration_cameras(n: int):
    """Rings of views above, level with and below the object."""
    elevations = [-20.0, 10.0, 40.0]
    el, az = [], []
    for i in range(n):
        el.append(elevations[i % len(elevations)])
        az.append(360.0 * i / n)
    return orbit_cameras(el, az, radius=2.6, fovy_deg=45.0)


def keep_real_components(vertices: np.ndarray, faces: np.ndarray, min_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Drop floaters: connected components whose area is below ``min_fraction`` of the total."""
    import trimesh

    mesh = trimesh.Trimesh(vertices, faces, process=False)
    parts = mesh.split(only_watertight=False)
    if len(parts) <= 1:
        return vertices, faces
    areas = np.array([p.area for p in parts])
    kept = [p for p, a in zip(parts, areas) if a >= min_fraction * areas.sum()]
    merged = trimesh.util.concatenate(kept)
    return np.asarray(merged.vertices, np.float32), np.asarray(merged.faces, np.int64)


def clean_mesh(vertices: np.ndarray, faces: np.ndarray, cfg: ExtractConfig) -> tuple[np.ndarray, np.ndarray]:
    """Floaters out, Taubin smoothing (removes the marching-cubes staircase), then decimation."""
    import fast_simplification
    import trimesh

    vertices, faces = keep_real_components(vertices, faces, cfg.min_component_fraction)
    mesh = trimesh.Trimesh(vertices, faces, process=True)
    if cfg.smooth_iterations:
        trimesh.smoothing.filter_taubin(mesh, iterations=cfg.smooth_iterations)
    vertices, faces = np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.int64)
    if len(faces) > cfg.target_faces:
        reduction = 1.0 - cfg.target_faces / len(faces)
        vertices, faces = fast_simplification.simplify(vertices, faces.astype(np.int32), target_reduction=reduction)
        mesh = trimesh.Trimesh(vertices, faces, process=True)
        mesh.remove_unreferenced_vertices()
        vertices, faces = np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.int64)
    return vertices, faces


def run_extract(ctx: RunContext, gaussians: Gaussians) -> TexturedMesh:
    cfg = ctx.cfg.extract
    started = time.perf_counter()
    gaussians = gaussians.cpu()
    grid = density_grid(gaussians, cfg.grid_resolution, cfg.bound).numpy()
    ctx.report("extract", 1, 4, started, "density grid")

    levels = cfg.candidate_levels if cfg.level == "auto" else (cfg.level,)
    best = None
    if len(levels) > 1:
        cams = calibration_cameras(cfg.calibration_views)
        res = cfg.calibration_resolution
        with torch.no_grad():
            alpha = gaussians.render(cams, res, res, torch.zeros(len(cams), 3)).alpha[..., 0]
            target = alpha > cfg.silhouette_alpha
        scores = []
        for level in tqdm(levels, desc="extract: calibrating level", leave=False):
            v, f = marching_cubes(grid, level, cfg.bound, cfg.seal_voxels)
            scores.append(silhouette_iou(v, f, cams, target, res))
        best = levels[int(np.argmax(scores))]
        ctx.report("extract", 2, 4, started, f"level {best} (silhouette IoU {max(scores):.3f})")
    level = best if best is not None else levels[0]
    vertices, faces = marching_cubes(grid, level, cfg.bound, cfg.seal_voxels)
    if len(faces) == 0:
        raise DreamerError(
            "mesh extraction found no surface: the coarse stage produced no solid object "
            "(try more coarse steps, another seed, or set extract.level lower)"
        )
    vertices, faces = clean_mesh(vertices, faces, cfg)
    ctx.report("extract", 4, 4, started, f"{len(faces)} faces at level {level}")
    ctx.stage_info["extract"] = {"level": level, "faces": int(len(faces)), "vertices": int(len(vertices))}
    return TexturedMesh(vertices, faces)
