"""The one-call pipeline: prompt in, output folder out; every stage checkpointed and resumable.

``generate(request)`` validates everything before any heavy work (prompt, preset, prior files,
device), then builds geometry by one of two routes, 3D Gaussians (init -> coarse -> extract) or
DreamPolish's progressive route (nerf -> neus -> dmtet), and goes on with polish -> texture ->
export. Each stage leaves its result in
``OUT/checkpoints/`` (written whole, then renamed); ``resume(OUT)`` reads ``OUT/run.json`` and
runs only what is missing, a stage in progress from its last intermediate checkpoint.

Example:
    >>> out = generate(GenerateRequest(prompt="a duck", out=Path("out/duck"),
    ...                                prior="reference:assets/demo/duck.glb", preset="cpu"))
"""

from __future__ import annotations

import fcntl
import platform
import resource
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from dreamer import __version__
from dreamer.errors import DreamerError
from dreamer.export.files import write_json
from dreamer.preset_files import default_preset
from dreamer.presets import RunConfig, config_from_dict, load_preset
from dreamer.priors.load import check_prior_available
from dreamer.prompts import check_prompt
from dreamer.representations.dmtet import DMTet
from dreamer.representations.fields import DensityField, SDFField
from dreamer.representations.gaussians import Gaussians, gaussians_from_state
from dreamer.representations.mesh import TexturedMesh
from dreamer.stages.coarse import run_coarse
from dreamer.stages.colour_sources import field_colour_source, gaussian_colour_source
from dreamer.stages.context import ProgressCallback, RunContext
from dreamer.stages.dmtet import run_dmtet
from dreamer.stages.edit import EDIT_CHECKPOINT, SOURCE_CHECKPOINT, run_edit
from dreamer.stages.export import run_export
from dreamer.stages.extract import run_extract
from dreamer.stages.init import run_init
from dreamer.stages.nerf import run_nerf
from dreamer.stages.neus import run_neus
from dreamer.stages.polish import run_polish
from dreamer.stages.texture import run_texture

ROUTES = {
    "gaussians": ("init", "coarse", "extract", "polish", "texture", "export"),
    "progressive": ("nerf", "neus", "dmtet", "polish", "texture", "export"),
}
STAGES = ROUTES["gaussians"]
_LIBRARIES = ("torch", "diffusers", "transformers", "gsplat", "trimesh", "xatlas", "numpy", "pydantic")


@dataclass
class GenerateRequest:
    prompt: str
    out: Path
    preset: str | None = None
    negative: str | None = None
    prior: str | None = None
    seed: int = 0
    device: str | None = None
    overrides: dict[str, object] = field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DreamerError("CUDA is not available on this machine: use --device cpu (and --preset cpu)")
    if name not in ("cpu", "cuda"):
        raise DreamerError(f"unknown device '{name}': use cpu or cuda")
    return torch.device(name)


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version(), "dreamer": __version__}
    for lib in _LIBRARIES:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = None
    return versions


# -- run.json --------------------------------------------------------------------------------------
def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write_run(ctx: RunContext, record: dict) -> None:
    write_json(ctx.out / "run.json", record)


def _peak_memory_mb(device: torch.device) -> dict[str, float]:
    peak = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if device.type == "cuda":
        peak["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return peak


@contextmanager
def _run_lock(out: Path):
    """One process per output folder: a second ``--resume`` of a running job is refused."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DreamerError(
                f"{out} is in use by another dreamer process; wait for it or pick another --out"
            ) from None
        yield


# -- stage results on disk ---------------------------------------------------------------------------
def _ckpt(ctx: RunContext, stage: str) -> Path:
    stage = "coarse" if stage == "edit" else stage  # an edit's result takes the coarse Gaussians' place
    return (
        ctx.checkpoints
        / {
            "init": "init.pt",
            "coarse": "coarse.pt",
            "extract": "extract.npz",
            "nerf": "nerf.pt",
            "neus": "neus.pt",
            "dmtet": "dmtet.pt",
            "polish": "polish.npz",
            "texture": "texture.npz",
        }[stage]
    )


def _save_state(owner: Gaussians | torch.nn.Module, path: Path) -> None:
    """Write ``owner.state_dict()`` (Gaussians, fields, DMTet) as CPU tensors, whole or not at all."""
    from dreamer.export.files import atomic_path

    with atomic_path(path) as tmp:
        torch.save({k: v.detach().cpu() for k, v in owner.state_dict().items()}, tmp)


def _load_gaussians(path: Path) -> Gaussians:
    return gaussians_from_state(torch.load(path, map_location="cpu", weights_only=True))


def _save_mesh(mesh: TexturedMesh, path: Path) -> None:
    from dreamer.export.files import atomic_path

    arrays = {k: v for k, v in vars(mesh).items() if v is not None}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _load_module(module: torch.nn.Module, path: Path, device: torch.device) -> torch.nn.Module:
    module.load_state_dict(torch.load(path, map_location=device, weights_only=True))
    return module.to(device).eval()


def _surface(ctx: RunContext, stage: str) -> Path:
    """Where a field stage's surface mesh goes (the next stage's start, and what bench scores)."""
    return ctx.checkpoints / f"{stage}_mesh.npz"


def _load_mesh(path: Path) -> TexturedMesh:
    with np.load(path) as data:
        return TexturedMesh(**{k: data[k] for k in data.files})


# -- running -------------------------------------------------------------------------------------------
def prepare(request: GenerateRequest, on_progress: ProgressCallback | None = None) -> tuple[RunContext, dict]:
    """Validate the request and lay out a new run folder; nothing heavy runs here."""
    prompt = check_prompt(request.prompt)
    preset = request.preset or default_preset()
    cfg = load_preset(preset, request.overrides, request.prior)
    prior = request.prior or cfg.prior
    check_prior_available(prior)
    device = resolve_device(request.device or cfg.device)
    if request.seed < 0:
        raise DreamerError(f"--seed must be zero or positive, got {request.seed}")
    out = Path(request.out)
    if (out / "run.json").exists():
        raise DreamerError(f"{out} already holds a run: continue it with --resume {out}, or choose another --out")
    if out.exists() and not out.is_dir():
        raise DreamerError(f"--out {out} is a file; give a folder")
    negative = request.negative if request.negative is not None else cfg.negative_prompt
    ctx = RunContext(
        out=out,
        cfg=cfg,
        prompt=prompt,
        negative=negative,
        seed=request.seed,
        device=device,
        prior_spec=prior,
        on_progress=on_progress,
    )
    record = {
        "status": "running",
        "prompt": prompt,
        "negative_prompt": negative,
        "seed": request.seed,
        "preset": preset,
        "prior": {"spec": prior},
        "device": str(device),
        "settings": cfg.model_dump(mode="json"),
        "versions": library_versions(),
        "created": _now(),
        "stages": {},
    }
    return ctx, record


def generate(request: GenerateRequest, on_progress: ProgressCallback | None = None) -> Path:
    """Run a new generation into ``request.out``; returns the folder."""
    ctx, record = prepare(request, on_progress)
    with _run_lock(ctx.out):
        _write_run(ctx, record)
        return _execute(ctx, record, stages_of(record))


def resume(out: Path, on_progress: ProgressCallback | None = None, device: str | None = None) -> Path:
    """Continue an interrupted run from its last checkpoint (settings come from its run.json)."""
    import json

    out = Path(out)
    try:
        record = json.loads((out / "run.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DreamerError(f"{out} holds no run to resume (no run.json); start one with dreamer generate") from None
    except (OSError, json.JSONDecodeError) as err:
        raise DreamerError(f"cannot read {out / 'run.json'}: {err}") from None
    cfg: RunConfig = config_from_dict(record["settings"], f"{out / 'run.json'} settings")
    ctx = RunContext(
        out=out,
        cfg=cfg,
        prompt=record["prompt"],
        negative=record["negative_prompt"],
        seed=record["seed"],
        device=resolve_device(device or record["device"].split(":")[0]),
        prior_spec=record["prior"]["spec"],
        on_progress=on_progress,
    )
    with _run_lock(out):
        if record.get("status") == "succeeded":
            return out
        record["status"] = "running"
        record["resumed"] = record.get("resumed", 0) + 1
        _write_run(ctx, record)
        return _execute(ctx, record, stages_of(record))


def stages_of(record: dict) -> tuple[str, ...]:
    """The stages a run.json's run goes through: its route's, except that an edit
    (``edited_from``, dreamer/stages/edit.py) starts from a finished run's Gaussians, so its
    ``edit`` stage takes the place of init and coarse."""
    stages = ROUTES[record["settings"].get("route", "gaussians")]
    if "edited_from" not in record:
        return stages
    return tuple(s for s in ("edit", *stages) if s not in ("init", "coarse"))


def _execute(ctx: RunContext, record: dict, stages: tuple[str, ...] = STAGES) -> Path:
    ctx.checkpoints.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(ctx.seed)  # libraries that draw from the global generator stay reproducible
    gaussians: Gaussians | None = None
    mesh: TexturedMesh | None = None
    field: DensityField | SDFField | None = None
    progressive = "dmtet" in stages
    try:
        for stage in stages:
            done = stage != "export" and _ckpt(ctx, stage).exists()
            if done:
                continue
            if ctx.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(ctx.device)
            started = time.perf_counter()
            if stage == "init":
                _save_state(run_init(ctx), _ckpt(ctx, "init"))
            elif stage == "coarse":
                gaussians = run_coarse(ctx, _load_gaussians(_ckpt(ctx, "init")))
                _save_state(gaussians, _ckpt(ctx, "coarse"))
                record["prior"].update(ctx.prior.describe())
                (ctx.checkpoints / "coarse_last.pt").unlink(missing_ok=True)
            elif stage == "edit":
                gaussians = run_edit(ctx, _load_gaussians(ctx.checkpoints / SOURCE_CHECKPOINT))
                _save_state(gaussians, _ckpt(ctx, "edit"))
                record["prior"].update(ctx.prior.describe())
                (ctx.checkpoints / EDIT_CHECKPOINT).unlink(missing_ok=True)
            elif stage == "extract":
                gaussians = gaussians or _load_gaussians(_ckpt(ctx, "coarse"))
                _save_mesh(run_extract(ctx, gaussians), _ckpt(ctx, "extract"))
            elif stage == "nerf":
                field, surface = run_nerf(ctx)
                _save_mesh(surface, _surface(ctx, "nerf"))
                _save_state(field, _ckpt(ctx, "nerf"))
                _finish_distill_stage(ctx, record, "nerf")
            elif stage == "neus":
                field = field or _load_module(_new_density_field(ctx), _ckpt(ctx, "nerf"), ctx.device)
                field, surface = run_neus(ctx, field)
                _save_mesh(surface, _surface(ctx, "neus"))
                _save_state(field, _ckpt(ctx, "neus"))
                _finish_distill_stage(ctx, record, "neus")
            elif stage == "dmtet":
                field = field or _load_module(SDFField(ctx.cfg.nerf.field), _ckpt(ctx, "neus"), ctx.device)
                dmtet, surface = run_dmtet(ctx, field)
                _save_mesh(surface, _surface(ctx, "dmtet"))
                _save_state(dmtet, _ckpt(ctx, "dmtet"))
                _finish_distill_stage(ctx, record, "dmtet")
            elif stage == "polish":
                start = _surface(ctx, "dmtet") if progressive else _ckpt(ctx, "extract")
                _save_mesh(run_polish(ctx, _load_mesh(start)), _ckpt(ctx, "polish"))
            elif stage == "texture":
                polished = _load_mesh(_ckpt(ctx, "polish"))
                if progressive:
                    source = field_colour_source(_load_dmtet(ctx).colour, polished, _load_mesh(_surface(ctx, "dmtet")))
                else:
                    gaussians = gaussians or _load_gaussians(_ckpt(ctx, "coarse"))
                    source = gaussian_colour_source(gaussians)
                mesh = run_texture(ctx, polished, source)
                _save_mesh(mesh, _ckpt(ctx, "texture"))
            else:
                if not progressive:
                    gaussians = gaussians or _load_gaussians(_ckpt(ctx, "coarse"))
                mesh = mesh or _load_mesh(_ckpt(ctx, "texture"))
                record["outputs"] = [p.name for p in run_export(ctx, mesh, gaussians)]
            record["stages"][stage] = {
                "wall_s": round(time.perf_counter() - started, 2),
                **_peak_memory_mb(ctx.device),
                **ctx.stage_info.get(stage, {}),
            }
            _write_run(ctx, record)
    except BaseException as err:
        record["status"] = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
        record["error"] = str(err).splitlines()[0] if str(err) else type(err).__name__
        _write_run(ctx, record)
        raise
    record["status"] = "succeeded"
    record["finished"] = _now()
    _write_run(ctx, record)
    return ctx.out


def _finish_distill_stage(ctx: RunContext, record: dict, stage: str) -> None:
    record["prior"].update(ctx.prior.describe())
    (ctx.checkpoints / f"{stage}_last.pt").unlink(missing_ok=True)


def _new_density_field(ctx: RunContext) -> DensityField:
    blob = ctx.cfg.nerf.blob
    return DensityField(ctx.cfg.nerf.field, blob.strength, blob.radius)


def _load_dmtet(ctx: RunContext) -> DMTet:
    dmtet = DMTet(ctx.cfg.dmtet.grid_resolution, ctx.cfg.nerf.field.radius, SDFField(ctx.cfg.nerf.field))
    return _load_module(dmtet, _ckpt(ctx, "dmtet"), ctx.device)
