"""The loop the progressive stages (NeRF, NeuS, DMTet) share: shaded renders from random orbit
cameras, scored by the run's objective, plus each stage's regularisers.

Shading follows DreamFusion: each batch is rendered either as plain albedo or under a random
light (Lambertian), and half the lit batches are textureless, so the prior sees the shape
itself. ``Views`` carries the choice, so a reference prior shades its mesh the same way.

A stage supplies a module (everything it optimises, checkpointed whole), an optimiser and a
``step_fn(views, step) -> (shaded render, {regulariser: loss})``; this loop scores the render
with the run's objective and does the rest: the time budget, intermediate checkpoints
(``checkpoints/STAGE_last.pt``, resumed after a crash), progress, previews.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Annotated, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor
from tqdm import tqdm

from dreamer.cameras import sample_orbit_cameras
from dreamer.config import Strict
from dreamer.export.files import atomic_path
from dreamer.export.images import save_image
from dreamer.objectives.sds import SDSConfig
from dreamer.objectives.select import ObjectiveConfig, build_objective
from dreamer.priors.base import Views
from dreamer.shading import sample_light_dirs
from dreamer.stages.coarse import CameraSampling, sample_backgrounds
from dreamer.stages.context import RunContext

Probability = Annotated[float, Field(ge=0, le=1)]
PositiveInt = Annotated[int, Field(gt=0)]
StepFn = Callable[[Views, int], tuple[Tensor, dict[str, Tensor]]]


class ShadingConfig(Strict):
    """How each batch is shaded."""

    #: probability of an unlit (albedo) batch after the first ``albedo_only_steps``
    albedo: Probability = 0.25
    #: probability that a lit batch is textureless (white albedo)
    textureless: Probability = 0.5
    ambient: Probability = 0.3
    albedo_only_steps: Annotated[int, Field(ge=0)] = 0


class DistillConfig(Strict):
    """What every progressive stage has; each stage's config adds its own representation's."""

    #: 0 skips the stage (the previous stage's result is converted straight through)
    steps: Annotated[int, Field(ge=0)] = 1000
    batch_size: PositiveInt = 1
    resolution: PositiveInt = 64
    cameras: CameraSampling = CameraSampling()
    background: Literal["random", "random_grey", "white", "black", "grey"] = "random"
    shading: ShadingConfig = ShadingConfig()
    objective: ObjectiveConfig = Field(default_factory=lambda: SDSConfig())
    checkpoint_every: PositiveInt = 100
    preview_every: PositiveInt = 50
    max_seconds: Annotated[float, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _fits_cameras(self) -> DistillConfig:
        if self.cameras.radius[0] <= 1.0:
            raise ValueError("cameras.radius must keep the cameras outside the unit scene (> 1)")
        return self


def sample_views(cfg: DistillConfig, step: int, generator: torch.Generator, device: torch.device) -> Views:
    """Cameras, backgrounds and shading of one batch (one shading mode per batch)."""
    c = cfg.cameras
    cams = sample_orbit_cameras(cfg.batch_size, generator, c.elevation, c.radius, c.fovy).to(device)
    background = sample_backgrounds(cfg.background, cfg.batch_size, generator).to(device)
    u = torch.rand(2, generator=generator)
    s = cfg.shading
    if step < s.albedo_only_steps or float(u[0]) < s.albedo:
        return Views(cams, background, shading="albedo")
    mode = "textureless" if float(u[1]) < s.textureless else "lambertian"
    return Views(
        cams, background, shading=mode, light_dirs=sample_light_dirs(cams.positions, generator), ambient=s.ambient
    )


def distill(
    ctx: RunContext,
    stage: str,
    cfg: DistillConfig,
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    step_fn: StepFn,
    after_step: Callable[[int], None] | None = None,
    describe: Callable[[], str] = lambda: "",
    generators: Sequence[torch.Generator] = (),
) -> None:
    """Optimise ``module`` in place for ``cfg.steps`` steps (or until ``cfg.max_seconds``).

    ``after_step(done)`` runs after each optimiser step (occupancy-grid updates and the like).
    ``generators`` are the stage's own random streams (sample jitter, ...): checkpointed with the
    rest, so a resumed run continues exactly as an uninterrupted one.
    """
    ckpt_path = ctx.checkpoints / f"{stage}_last.pt"
    views_gen, objective_gen = ctx.generator(11), ctx.generator(12)
    objective = build_objective(ctx.prior, cfg.objective)
    prompt = ctx.embedded_prompt
    start = 0
    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=ctx.device, weights_only=False)
        module.load_state_dict(state["module"])
        optimizer.load_state_dict(state["optimizer"])
        objective.load_state_dict(state["objective"])
        views_gen.set_state(state["views_gen"])
        objective_gen.set_state(state["objective_gen"])
        for generator, saved in zip(generators, state["generators"]):
            generator.set_state(saved)
        start = state["step"]
    info = ctx.stage_info.setdefault(stage, {})
    started = time.perf_counter()
    bar = tqdm(total=cfg.steps, initial=start, desc=stage, unit="step", dynamic_ncols=True, leave=False)
    terms: dict[str, Tensor] = {}
    for step in range(start, cfg.steps):
        if step > start and cfg.max_seconds is not None and time.perf_counter() - started > cfg.max_seconds:
            info["stopped_at_step"] = step
            info["reason"] = f"time budget of {cfg.max_seconds:g} s"
            break
        views = sample_views(cfg, step, views_gen, ctx.device)
        image, terms = step_fn(views, step)
        terms["image"] = objective(image, views, prompt, step, cfg.steps, objective_gen).loss
        loss = sum(terms.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grads_finite = all(p.grad is None or torch.isfinite(p.grad).all() for p in module.parameters())
        if grads_finite:  # one bad batch must not poison Adam's moments
            optimizer.step()
        done = step + 1
        if after_step is not None:
            after_step(done)
        bar.update(1)
        bar.set_postfix(loss=f"{float(loss.detach()):.4g}")
        preview = None
        if done % cfg.preview_every == 0 or done == cfg.steps:
            preview = ctx.out / "previews" / f"{stage}_latest.png"
            save_image(image[0].detach(), preview)
        if done % cfg.checkpoint_every == 0 and done < cfg.steps:
            payload = {
                "module": module.state_dict(),
                "optimizer": optimizer.state_dict(),
                "objective": objective.state_dict(),
                "views_gen": views_gen.get_state(),
                "objective_gen": objective_gen.get_state(),
                "generators": [g.get_state() for g in generators],
                "step": done,
            }
            with atomic_path(ckpt_path) as tmp:
                torch.save(payload, tmp)
        ctx.report(stage, done, cfg.steps, started, describe(), preview)
    bar.close()
    info["final_terms"] = {k: round(float(v.detach()), 6) for k, v in terms.items()}
    if done_steps := info.get("stopped_at_step", cfg.steps) - start:
        info["seconds_per_step"] = round((time.perf_counter() - started) / done_steps, 4)
