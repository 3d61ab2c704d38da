"""The coarse stage: 3D Gaussians optimised against the prior through a score-distillation objective.

Each step renders a batch of random orbit views over random (or fixed) backgrounds, asks the
objective for its loss, and lets Adam and the densifier do the rest. A checkpoint holds the
Gaussians, Adam's state, the densifier's statistics and the random generators, so a killed run
continues where it was, not from the start.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

import torch
from pydantic import Field
from tqdm import tqdm

from dreamer.cameras import sample_orbit_cameras
from dreamer.config import Ramp, Strict, scheduled
from dreamer.export.files import atomic_path
from dreamer.export.images import save_image
from dreamer.objectives.sds import SDSConfig
from dreamer.objectives.select import ObjectiveConfig, build_objective
from dreamer.priors.base import Views
from dreamer.representations.densify import Densifier, DensifyConfig
from dreamer.representations.gaussians import Gaussians, gaussians_from_state
from dreamer.stages.context import RunContext

PositiveInt = Annotated[int, Field(gt=0)]
Range = tuple[float, float]


class CameraSampling(Strict):
    """Random orbit cameras of the coarse stage (degrees and scene units)."""

    elevation: Range = (-10.0, 45.0)
    radius: Range = (2.2, 2.8)
    fovy: Range = (40.0, 50.0)


class GaussianLearningRates(Strict):
    means: float | Ramp = 1e-3
    scales: float | Ramp = 5e-3
    quats: float | Ramp = 5e-3
    opacities: float | Ramp = 5e-2
    colors: float | Ramp = 1e-2


class CoarseConfig(Strict):
    steps: PositiveInt = 500
    batch_size: PositiveInt = 4
    resolution: PositiveInt = 128
    cameras: CameraSampling = CameraSampling()
    background: Literal["random", "random_grey", "white", "black", "grey"] = "random"
    objective: ObjectiveConfig = Field(default_factory=lambda: SDSConfig())
    lr: GaussianLearningRates = GaussianLearningRates()
    densify: DensifyConfig = DensifyConfig()
    checkpoint_every: PositiveInt = 100
    preview_every: PositiveInt = 50
    #: wall-clock budget of the stage; past it the remaining steps are skipped (None = no limit)
    max_seconds: Annotated[float, Field(gt=0)] | None = None


_PARAM_LR = {
    "means": "means",
    "log_scales": "scales",
    "quats": "quats",
    "opacity_logits": "opacities",
    "color_logits": "colors",
}
_BACKGROUNDS = {"white": 1.0, "black": 0.0, "grey": 0.5}


def make_optimizer(gaussians: Gaussians, lr: GaussianLearningRates) -> torch.optim.Adam:
    groups = [
        {"params": [getattr(gaussians, name)], "name": name, "lr": scheduled(getattr(lr, key), 0)}
        for name, key in _PARAM_LR.items()
    ]
    return torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-15)


def set_learning_rates(optimizer: torch.optim.Optimizer, lr: GaussianLearningRates, step: int) -> None:
    for group in optimizer.param_groups:
        group["lr"] = scheduled(getattr(lr, _PARAM_LR[group["name"]]), step)


def sample_backgrounds(kind: str, batch: int, generator: torch.Generator) -> torch.Tensor:
    """[B, 3] colours; random ones keep the object from painting its own background.

    ``random_grey``: a random grey level per view, the backgrounds the shapes prior was trained on.
    """
    if kind == "random":
        return torch.rand(batch, 3, generator=generator)
    if kind == "random_grey":
        return torch.rand(batch, 1, generator=generator).expand(batch, 3).clone()
    return torch.full((batch, 3), _BACKGROUNDS[kind])


def run_coarse(ctx: RunContext, gaussians: Gaussians) -> Gaussians:
    """Optimise ``gaussians`` for ``cfg.coarse.steps`` steps, resuming from a checkpoint if any."""
    cfg = ctx.cfg.coarse
    ckpt_path = ctx.checkpoints / "coarse_last.pt"
    gaussians = gaussians.to(ctx.device)
    camera_gen, objective_gen = ctx.generator(1), ctx.generator(2)
    start = 0
    state = torch.load(ckpt_path, map_location=ctx.device, weights_only=False) if ckpt_path.exists() else None
    if state is not None:
        gaussians = gaussians_from_state(state["gaussians"]).to(ctx.device)
    optimizer = make_optimizer(gaussians, cfg.lr)
    densifier = Densifier(cfg.densify, gaussians)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        densifier.grad_sum, densifier.count = state["densify"]
        camera_gen.set_state(state["camera_gen"])
        objective_gen.set_state(state["objective_gen"])
        start = state["step"]

    objective = build_objective(ctx.prior, cfg.objective)
    if state is not None:
        objective.load_state_dict(state["objective"])
    prompt = ctx.embedded_prompt
    res = cfg.resolution
    started = time.perf_counter()
    info = ctx.stage_info.setdefault("coarse", {})
    bar = tqdm(total=cfg.steps, initial=start, desc="coarse", unit="step", dynamic_ncols=True, leave=False)

    def save_checkpoint(step: int) -> None:
        payload = {
            "gaussians": {k: v.detach() for k, v in gaussians.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "objective": objective.state_dict(),
            "densify": (densifier.grad_sum, densifier.count),
            "camera_gen": camera_gen.get_state(),
            "objective_gen": objective_gen.get_state(),
            "step": step,
        }
        with atomic_path(ckpt_path) as tmp:
            torch.save(payload, tmp)

    for step in range(start, cfg.steps):
        if step > start and cfg.max_seconds is not None and time.perf_counter() - started > cfg.max_seconds:
            info["stopped_at_step"] = step
            info["reason"] = f"time budget of {cfg.max_seconds:g} s"
            break
        set_learning_rates(optimizer, cfg.lr, step)
        c = cfg.cameras
        cams = sample_orbit_cameras(cfg.batch_size, camera_gen, c.elevation, c.radius, c.fovy)
        background = sample_backgrounds(cfg.background, cfg.batch_size, camera_gen).to(ctx.device)
        out = gaussians.render(cams, res, res, background)
        result = objective(out.rgb, Views(cams, background), prompt, step, cfg.steps, objective_gen)
        optimizer.zero_grad(set_to_none=True)
        result.loss.backward()
        densifier.accumulate(gaussians, res, res)
        optimizer.step()
        densifier.step(step + 1, gaussians, optimizer, camera_gen)

        done = step + 1
        bar.update(1)
        bar.set_postfix(n=len(gaussians), g=f"{result.grad_norm:.3g}")
        preview = None
        if done % cfg.preview_every == 0 or done == cfg.steps:
            preview = ctx.out / "previews" / "coarse_latest.png"
            save_image(out.rgb[0].detach(), preview)
        if done % cfg.checkpoint_every == 0 and done < cfg.steps:
            save_checkpoint(done)
        ctx.report("coarse", done, cfg.steps, started, f"{len(gaussians)} Gaussians", preview)
    bar.close()
    info["gaussians"] = len(gaussians)
    return gaussians
