"""The polish stage (DreamPolish): refine the extracted mesh so its normals agree with a normal
estimator, from cameras whose field of view varies.

Each step renders the mesh from a few framed cameras (20-70 degree lenses by default), shaded
textureless under a random light, and combines:

* the normal term: ``1 - cos`` between the rendered face normals (camera frame) and the
  estimator's prediction for that shaded render, over pixels both see; with no estimator the
  prior itself scores the rendered normal map (SDS on normal maps, ProlificDreamer's geometry
  stage), unless it cannot judge normal maps (the built-in shapes prior): then the stage is
  skipped and run.json says why;
* the image term: the run's objective on the antialiased shaded render, which is what moves
  silhouettes and carves what only shading reveals (a cup's hollow);
* the silhouette term, when the estimator knows the object's outline (the oracle does);
* normal consistency between adjacent faces.

Vertices move through the Large Steps parameterisation (``mesh_ops``), so updates stay smooth and
the surface does not tangle; edges stretched past ``max_edge`` times their initial median length
are split every ``remesh_every`` steps.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field
from tqdm import tqdm

from dreamer.cameras import sample_framed_cameras
from dreamer.config import Ramp, Strict, scheduled
from dreamer.export.images import save_image
from dreamer.normals.base import NormalEstimator
from dreamer.normals.load import load_normal_estimator
from dreamer.objectives.sds import SDSConfig
from dreamer.objectives.select import ObjectiveConfig, build_objective
from dreamer.priors.base import Views
from dreamer.representations.mesh import TexturedMesh
from dreamer.representations.mesh_ops import (
    SmoothParameterisation,
    face_pairs,
    normal_consistency,
    split_long_edges,
    unique_edges,
)
from dreamer.shading import sample_light_dirs, shade
from dreamer.stages.coarse import sample_backgrounds
from dreamer.stages.context import RunContext
from renderers.mesh import MeshRender, render_mesh

NonNegative = Annotated[float, Field(ge=0)]
Range = tuple[float, float]
#: steps over which Adam's step ramps up after the optimiser starts or restarts (at each remesh)
ADAM_WARMUP_STEPS = 20


class PolishWeights(Strict):
    """Relative weights. The image term is a score-distillation loss summed over every pixel
    (``0.5 * sum(g^2) / B``) while the normal and silhouette terms are pixel means, hence the small
    image weight: at 1e-4 the two pull with comparable strength at 128 px."""

    normal: NonNegative = 1.0
    image: NonNegative = 1e-4
    silhouette: NonNegative = 1.0
    normal_consistency: NonNegative = 0.05


class PolishConfig(Strict):
    #: 0 switches the stage off (the extracted mesh goes to texturing as it is)
    steps: Annotated[int, Field(ge=0)] = 300
    batch_size: Annotated[int, Field(gt=0)] = 2
    resolution: Annotated[int, Field(gt=0)] = 128
    fovy: Range = (20.0, 70.0)
    #: polishing must see the underside too, or what only low views show drifts
    elevation: Range = (-40.0, 70.0)
    #: auto, oracle, prior, marigold, or a Marigold hub id / folder (see dreamer.normals.load)
    estimator: str = "auto"
    objective: ObjectiveConfig = Field(default_factory=lambda: SDSConfig())
    weights: PolishWeights = PolishWeights()
    #: Adam's step on the smooth parameterisation; a Ramp moves far early (a filled-in hollow
    #: must sink by most of the object's height) and settles late (fine detail stays smooth)
    lr: Annotated[float, Field(gt=0)] | Ramp = 3e-3
    #: lambda of the Large Steps parameterisation: higher = smoother, lower-frequency updates;
    #: a Ramp is read whenever the mesh is (re)parameterised, at the start and at each remesh
    smoothing: NonNegative | Ramp = 1.0
    remesh_every: Annotated[int, Field(gt=0)] = 100
    max_edge: Annotated[float, Field(gt=1)] = 2.0
    background: Literal["random", "random_grey", "grey"] = "random"
    preview_every: Annotated[int, Field(gt=0)] = 50
    max_seconds: Annotated[float, Field(gt=0)] | None = None


def run_polish(ctx: RunContext, mesh: TexturedMesh) -> TexturedMesh:
    """Polish ``mesh`` (geometry only; colours come later) and return the refined mesh."""
    cfg = ctx.cfg.polish
    info = ctx.stage_info.setdefault("polish", {})
    if cfg.steps == 0:
        info["skipped"] = True
        return mesh
    prior = ctx.prior
    estimator = load_normal_estimator(cfg.estimator, prior, ctx.device)
    if estimator is None and not prior.judges_normal_maps:
        # normal-map SDS with a prior that has never seen a normal map roughens the surface
        info.update(skipped=True, reason=f"no normal estimator, and {prior.name} cannot judge normal maps")
        return mesh
    info["estimator"] = estimator.name if estimator is not None else "prior (normal-map SDS)"
    objective = build_objective(prior, cfg.objective)
    prompt = ctx.embedded_prompt
    gen = ctx.generator(7)

    vertices = np.asarray(mesh.vertices, np.float64)
    faces = np.asarray(mesh.faces, np.int64)
    edges = unique_edges(faces)
    max_edge = cfg.max_edge * float(np.median(np.linalg.norm(vertices[edges[:, 0]] - vertices[edges[:, 1]], axis=1)))
    object_radius = 1.05 * float(np.linalg.norm(vertices, axis=1).max())
    param, optimizer, faces_t, pairs = _setup(vertices, faces, cfg, 0, ctx.device)
    optimizer_started = 0
    res = cfg.resolution
    started = time.perf_counter()
    bar = tqdm(total=cfg.steps, desc="polish", unit="step", dynamic_ncols=True, leave=False)
    history: list[float] = []
    for step in range(cfg.steps):
        if step and cfg.max_seconds is not None and time.perf_counter() - started > cfg.max_seconds:
            info["stopped_at_step"] = step
            break
        if step and step % cfg.remesh_every == 0:
            vertices = param.vertices().detach().cpu().numpy()
            vertices, faces = split_long_edges(vertices, faces, max_edge)
            param, optimizer, faces_t, pairs = _setup(vertices, faces, cfg, step, ctx.device)
            optimizer_started = step
        # Adam's first steps move every vertex by about lr whatever its gradient (bias correction
        # makes m / sqrt(v) = +-1), so after each (re)start the step ramps up
        warmup = min(1.0, (step - optimizer_started + 1) / ADAM_WARMUP_STEPS)
        for group in optimizer.param_groups:
            group["lr"] = warmup * scheduled(cfg.lr, step)
        cams = sample_framed_cameras(cfg.batch_size, gen, object_radius, cfg.fovy, cfg.elevation).to(ctx.device)
        background = sample_backgrounds(cfg.background, cfg.batch_size, gen)
        light = sample_light_dirs(cams.positions, gen)
        views = Views(cams, background.to(ctx.device), shading="textureless", light_dirs=light)
        v = param.vertices()
        out = render_mesh(v, faces_t, cams.mvp(res, res), cams.w2c(), (res, res))
        # one antialiasing pass for the shaded image and the coverage (the blend is per channel)
        shaded_and_alpha = torch.cat([shade(out.rgb, out.face_normal_world, out.alpha, views), out.alpha], -1)
        shaded, alpha = out.antialias(shaded_and_alpha).split([3, 1], dim=-1)
        terms = _normal_terms(out, shaded, alpha, views, estimator, cfg, objective, prompt, step, gen)
        if cfg.weights.image > 0:
            terms["image"] = cfg.weights.image * objective(shaded, views, prompt, step, cfg.steps, gen).loss
        if cfg.weights.normal_consistency > 0:
            terms["normal_consistency"] = cfg.weights.normal_consistency * normal_consistency(v, faces_t, pairs)
        loss = sum(terms.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if torch.isfinite(param.u.grad).all():
            optimizer.step()
        if "normal" in terms:
            history.append(float(terms["normal"].detach()) / max(cfg.weights.normal, 1e-12))
        done = step + 1
        bar.update(1)
        bar.set_postfix(faces=len(faces), loss=f"{float(loss.detach()):.4g}")
        preview = None
        if done % cfg.preview_every == 0 or done == cfg.steps:
            preview = ctx.out / "previews" / "polish_latest.png"
            save_image(shaded[0].detach(), preview)
        ctx.report("polish", done, cfg.steps, started, f"{len(faces)} faces", preview)
    bar.close()
    vertices = param.vertices().detach().cpu().numpy()
    if history:
        k = max(1, len(history) // 10)
        info["normal_error_start"] = round(float(np.mean(history[:k])), 4)
        info["normal_error_end"] = round(float(np.mean(history[-k:])), 4)
    info["faces"] = int(len(faces))
    return TexturedMesh(vertices=vertices.astype(np.float32), faces=faces.astype(np.int32))


def _setup(vertices: np.ndarray, faces: np.ndarray, cfg: PolishConfig, step: int, device: torch.device):
    """Parameterise the mesh (with the smoothing of ``step``) and start a fresh optimiser."""
    v = torch.as_tensor(vertices, dtype=torch.float32, device=device)
    param = SmoothParameterisation(v, faces, scheduled(cfg.smoothing, step))
    optimizer = torch.optim.Adam([param.u])
    faces_t = torch.as_tensor(faces, dtype=torch.int64, device=device)
    pairs = torch.as_tensor(face_pairs(faces), device=device)
    return param, optimizer, faces_t, pairs


def _normal_terms(
    out: MeshRender,
    shaded: torch.Tensor,
    alpha: torch.Tensor,
    views: Views,
    estimator: NormalEstimator | None,
    cfg: PolishConfig,
    objective,
    prompt,
    step: int,
    gen: torch.Generator,
) -> dict[str, torch.Tensor]:
    """The normal (and, with an outline-aware estimator, silhouette) losses of one batch;
    ``shaded`` and ``alpha`` are the antialiased render and coverage."""
    w = cfg.weights
    normal_cam = views.cameras.rotate_to_camera(out.face_normal_world)
    terms: dict[str, torch.Tensor] = {}
    if estimator is None:
        if w.normal > 0:  # the prior judges the normal map, encoded as an image
            normal_image = out.antialias(
                shade(normal_cam * 0.5 + 0.5, out.face_normal_world, out.alpha, _albedo(views))
            )
            terms["normal"] = w.normal * objective(normal_image, views, prompt, step, cfg.steps, gen).loss
        return terms
    pred = estimator.predict(shaded.detach(), views)
    mask = out.alpha * pred.confidence
    if pred.foreground is not None:
        mask = mask * pred.foreground
    if w.normal > 0:
        cos = (normal_cam * pred.normals).sum(-1, keepdim=True)
        terms["normal"] = w.normal * ((1.0 - cos) * mask).sum() / mask.sum().clamp_min(1.0)
    if w.silhouette > 0 and pred.foreground is not None:
        terms["silhouette"] = w.silhouette * ((alpha - pred.foreground) ** 2).mean()
    return terms


def _albedo(views: Views) -> Views:
    return Views(views.cameras, views.background, shading="albedo")
