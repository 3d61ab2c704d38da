"""Editing a finished run with DDS: the same object, moved toward a new prompt (ED-NeRF's idea on Gaussians).

``edit(EditRequest(source=OUT, prompt="a red car"))`` starts a *new* run folder (``OUT-edit`` by
default; OUT itself is only read) from OUT's coarse Gaussians. Its ``edit`` stage replaces init and
coarse: a few hundred Adam steps at low learning rates on DDS, the target prompt against the source
prompt, where the source branch sees the frozen original rendered by the same cameras over the same
backgrounds with the same t and noise (reference §10). What the two prompts share cancels, so only
the difference moves the Gaussians; identical prompts are an exact zero update. There is no
densification: the edit refines what is there. The result is saved as ``checkpoints/coarse.pt``
and the usual extract -> texture -> export stages (``pipeline._execute``) finish the run, so an
interrupted edit continues with ``dreamer generate --resume OUT-edit`` like any run.

The edit's settings are the ``edit`` section of the run's settings (``EditConfig``); everything
else (cameras, background, resolution, extract, texture, export) is inherited from OUT's run.json.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import torch
from pydantic import Field
from tqdm import tqdm

from dreamer.cameras import sample_orbit_cameras
from dreamer.config import Strict
from dreamer.errors import DreamerError
from dreamer.export.files import atomic_path
from dreamer.export.images import save_image
from dreamer.objectives.dds import DDS, DDSConfig
from dreamer.priors.base import Views
from dreamer.representations.gaussians import Gaussians, gaussians_from_state
from dreamer.stages.coarse import GaussianLearningRates, make_optimizer, sample_backgrounds, set_learning_rates
from dreamer.stages.context import ProgressCallback, RunContext

PositiveInt = Annotated[int, Field(gt=0)]

#: the finished run's Gaussians, copied into the edit's folder (the start and the frozen source)
SOURCE_CHECKPOINT = "source.pt"
#: the edit stage's intermediate checkpoint (removed once ``coarse.pt`` holds the result)
EDIT_CHECKPOINT = "edit_last.pt"


class EditConfig(Strict):
    """The ``edit`` section: DDS steps on a finished run's Gaussians (see the module docstring).

    Learning rates are a fraction of coarse's: the edit should change appearance and nudge shape,
    not rebuild it. ``objective.source_prompt`` is filled in by ``prepare_edit``.
    """

    steps: PositiveInt = 300
    #: views per step; None = the run's ``coarse.batch_size``
    batch_size: PositiveInt | None = None
    #: render size; None = the run's ``coarse.resolution``
    resolution: PositiveInt | None = None
    objective: DDSConfig = DDSConfig()
    lr: GaussianLearningRates = GaussianLearningRates(means=2e-4, scales=1e-3, quats=1e-3, opacities=1e-2, colors=5e-3)
    checkpoint_every: PositiveInt = 50
    preview_every: PositiveInt = 50
    #: wall-clock budget of the stage; past it the remaining steps are skipped (None = no limit)
    max_seconds: Annotated[float, Field(gt=0)] | None = None


# -- the stage --------------------------------------------------------------------------------------
def _clone(g: Gaussians, device: torch.device) -> Gaussians:
    """A copy that shares no storage (``gaussians_from_state`` keeps the tensors it is given)."""
    return gaussians_from_state({k: v.detach().clone() for k, v in g.state_dict().items()}).to(device)


def run_edit(ctx: RunContext, source: Gaussians) -> Gaussians:
    """Optimise a copy of ``source`` with DDS (``ctx.prompt`` vs ``cfg.edit.objective.source_prompt``).

    ``source`` is never modified: it is the frozen original whose renders feed DDS's source branch.
    Resumes from ``checkpoints/edit_last.pt`` when there is one.
    """
    cfg = ctx.cfg.edit
    coarse = ctx.cfg.coarse
    ckpt_path = ctx.checkpoints / EDIT_CHECKPOINT
    source = _clone(source, ctx.device).requires_grad_(False)
    camera_gen, objective_gen = ctx.generator(11), ctx.generator(12)
    state = torch.load(ckpt_path, map_location=ctx.device, weights_only=False) if ckpt_path.exists() else None
    gaussians = gaussians_from_state(state["gaussians"]).to(ctx.device) if state else _clone(source, ctx.device)
    optimizer = make_optimizer(gaussians, cfg.lr)
    start = 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        camera_gen.set_state(state["camera_gen"])
        objective_gen.set_state(state["objective_gen"])
        start = state["step"]

    def render_source(views: Views, height: int, width: int) -> torch.Tensor:
        with torch.no_grad():
            return source.render(views.cameras, height, width, views.background).rgb

    objective = DDS(ctx.prior, cfg.objective, source=render_source)
    if state is not None:
        objective.load_state_dict(state["objective"])
    prompt = ctx.embedded_prompt
    batch = cfg.batch_size or coarse.batch_size
    res = cfg.resolution or coarse.resolution
    started = time.perf_counter()
    info = ctx.stage_info.setdefault("edit", {})
    bar = tqdm(total=cfg.steps, initial=start, desc="edit", unit="step", dynamic_ncols=True, leave=False)

    def save_checkpoint(step: int) -> None:
        payload = {
            "gaussians": {k: v.detach() for k, v in gaussians.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "objective": objective.state_dict(),
            "camera_gen": camera_gen.get_state(),
            "objective_gen": objective_gen.get_state(),
            "step": step,
        }
        with atomic_path(ckpt_path) as tmp:
            torch.save(payload, tmp)

    grad_norm = 0.0
    for step in range(start, cfg.steps):
        if step > start and cfg.max_seconds is not None and time.perf_counter() - started > cfg.max_seconds:
            info["stopped_at_step"] = step
            info["reason"] = f"time budget of {cfg.max_seconds:g} s"
            break
        set_learning_rates(optimizer, cfg.lr, step)
        c = coarse.cameras
        cams = sample_orbit_cameras(batch, camera_gen, c.elevation, c.radius, c.fovy)
        background = sample_backgrounds(coarse.background, batch, camera_gen).to(ctx.device)
        out = gaussians.render(cams, res, res, background)
        result = objective(out.rgb, Views(cams, background), prompt, step, cfg.steps, objective_gen)
        optimizer.zero_grad(set_to_none=True)
        result.loss.backward()
        optimizer.step()
        grad_norm = result.grad_norm

        done = step + 1
        bar.update(1)
        bar.set_postfix(g=f"{grad_norm:.3g}")
        preview = None
        if done % cfg.preview_every == 0 or done == cfg.steps:
            preview = ctx.out / "previews" / "edit_latest.png"
            save_image(out.rgb[0].detach(), preview)
        if done % cfg.checkpoint_every == 0 and done < cfg.steps:
            save_checkpoint(done)
        ctx.report("edit", done, cfg.steps, started, f"|g| {grad_norm:.3g}", preview)
    bar.close()
    info.update(gaussians=len(gaussians), last_grad_norm=round(grad_norm, 6))
    return gaussians


# -- the run ------------------------------------------------------------------------------------------
@dataclass
class EditRequest:
    """An edit of the finished run in ``source``; None fields default to that run's own values."""

    source: Path
    prompt: str
    #: what the run shows now; default: the run's own prompt
    source_prompt: str | None = None
    #: default: ``<source>-edit`` beside the source
    out: Path | None = None
    prior: str | None = None
    seed: int | None = None
    device: str | None = None
    #: dotted settings on top of the run's, e.g. {"edit.steps": 100}
    overrides: dict[str, object] = field(default_factory=dict)


def default_edit_out(source: Path) -> Path:
    """``OUT-edit`` beside OUT (so an edit is never written inside the run it edits)."""
    source = Path(source)
    return source.parent / f"{source.resolve().name}-edit"


def read_finished_run(source: Path) -> dict:
    """OUT's run.json, checked to be a finished run with Gaussians to edit (one-line errors)."""
    source = Path(source)
    if not source.is_dir():
        raise DreamerError(f"{source} is not a run folder: give the output folder of a finished dreamer generate")
    try:
        record = json.loads((source / "run.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DreamerError(f"{source} holds no run to edit (no run.json)") from None
    except (OSError, json.JSONDecodeError) as err:
        raise DreamerError(f"cannot read {source / 'run.json'}: {err}") from None
    if not isinstance(record, dict) or "settings" not in record or "prompt" not in record:
        raise DreamerError(f"{source / 'run.json'} is not a dreamer run record")
    status = record.get("status")
    if status != "succeeded":
        raise DreamerError(
            f"{source} has not finished (status: {status}); finish it with dreamer generate --resume {source}"
        )
    if not (source / "checkpoints" / "coarse.pt").is_file():
        raise DreamerError(f"{source} has no checkpoints/coarse.pt: its Gaussians are needed to edit it")
    return record


def prepare_edit(request: EditRequest, on_progress: ProgressCallback | None = None) -> tuple[RunContext, dict]:
    """Validate an edit and describe its run; nothing is written and nothing heavy runs here."""
    from dreamer.preset_files import apply_overrides
    from dreamer.presets import config_from_dict
    from dreamer.priors.load import check_prior_available
    from dreamer.prompts import check_prompt
    from dreamer.stages.pipeline import _now, library_versions, resolve_device

    target = check_prompt(request.prompt)
    src = Path(request.source)
    original = read_finished_run(src)
    source_key = "edit.objective.source_prompt"
    source_text = request.source_prompt
    if source_text is None:
        source_text = str(request.overrides.get(source_key) or original["prompt"])
    source_prompt = check_prompt(source_text)
    if source_prompt == target:
        raise DreamerError(f"the prompt equals the source prompt ('{target}'): DDS would change nothing")
    overrides = {**request.overrides, source_key: source_prompt}
    cfg = config_from_dict(
        apply_overrides(original["settings"], overrides), f"{src / 'run.json'} settings with the edit's changes"
    )
    prior = request.prior or original["prior"]["spec"]
    check_prior_available(prior)
    device = resolve_device(request.device or cfg.device)
    seed = original.get("seed", 0) if request.seed is None else request.seed
    if seed < 0:
        raise DreamerError(f"--seed must be zero or positive, got {seed}")
    out = Path(request.out) if request.out is not None else default_edit_out(src)
    src_abs, out_abs = src.resolve(), out.resolve()
    if out_abs == src_abs or src_abs in out_abs.parents:
        raise DreamerError(f"--out {out} is inside the run being edited; an edit goes to a new folder")
    if (out / "run.json").exists():
        raise DreamerError(
            f"{out} already holds a run: continue it with dreamer generate --resume {out}, or pick --out"
        )
    if out.exists() and not out.is_dir():
        raise DreamerError(f"--out {out} is a file; give a folder")
    ctx = RunContext(
        out=out,
        cfg=cfg,
        prompt=target,
        negative=original.get("negative_prompt", ""),
        seed=seed,
        device=device,
        prior_spec=prior,
        on_progress=on_progress,
    )
    record = {
        "status": "running",
        "prompt": target,
        "source_prompt": source_prompt,
        "edited_from": {
            "run": str(src_abs),
            "prompt": original["prompt"],
            "seed": original.get("seed"),
            "coarse_sha256": hashlib.sha256((src / "checkpoints" / "coarse.pt").read_bytes()).hexdigest(),
        },
        "negative_prompt": ctx.negative,
        "seed": seed,
        "preset": original.get("preset"),
        "prior": {"spec": prior},
        "device": str(device),
        "settings": cfg.model_dump(mode="json"),
        "versions": library_versions(),
        "created": _now(),
        "stages": {},
    }
    return ctx, record


def edit(request: EditRequest, on_progress: ProgressCallback | None = None) -> Path:
    """Edit the finished run ``request.source`` into a new folder; returns that folder.

    OUT is only read. The run then goes through the pipeline's runner like any other, so it
    checkpoints, reports progress and resumes (``pipeline.resume``) the same way.
    """
    from dreamer.stages.pipeline import _execute, _load_gaussians, _run_lock, _save_state, _write_run, stages_of

    ctx, record = prepare_edit(request, on_progress)
    try:
        source = _load_gaussians(Path(request.source) / "checkpoints" / "coarse.pt")
    except Exception as err:  # a truncated or foreign file: say which, in one line
        raise DreamerError(f"cannot read the Gaussians of {request.source}: {str(err).splitlines()[0]}") from None
    with _run_lock(ctx.out):
        if (ctx.out / "run.json").exists():  # another edit got here between the check and the lock
            raise DreamerError(f"{ctx.out} already holds a run: continue it with dreamer generate --resume {ctx.out}")
        # the source goes in first: a run.json without it could not be resumed
        _save_state(source, ctx.checkpoints / SOURCE_CHECKPOINT)
        _write_run(ctx, record)
        return _execute(ctx, record, stages_of(record))
