"""What a user may ask for, checked before anything is queued.

Every field has a bound (prompt length, numeric ranges, preset names); priors come only from the
built-in aliases, the operator's list, or operator-allowed folders; user overrides may tune numbers
but never name a file. A request that passes ``validate_request`` is stored as a plain dict (the
job's ``spec``) and is what the worker runs.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from dreamer.errors import DreamerError
from dreamer.jobs.config import StudioConfig
from dreamer.prompts import MAX_PROMPT_CHARS

MAX_SEED = 2**31 - 1
_REFERENCE = "reference:"
_REFERENCE_SUFFIXES = (".glb", ".gltf", ".obj", ".ply", ".stl", ".off")
_WORD = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_KEY = re.compile(r"^[a-z_]+(\.[a-z_]+){1,3}$")
#: upper bounds on the settings that decide a job's cost (the preset schema checks the rest)
COST_LIMITS: dict[str, float] = {
    "coarse.steps": 20000,
    "coarse.batch_size": 16,
    "coarse.resolution": 1024,
    "init.num_points": 500_000,
    "extract.grid_resolution": 512,
    "extract.target_faces": 500_000,
    "texture.resolution": 4096,
    "texture.bake_resolution": 2048,
    "export.preview_size": 2048,
}


class JobRequest(BaseModel):
    """A job as a user submits it (the HTTP body; the web UI builds the same)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, description="what to make")
    negative: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS, description="negative prompt")
    preset: str | None = Field(default=None, max_length=64, description="a preset name (GET /api/v1/presets)")
    seed: int | None = Field(
        default=None, ge=0, le=MAX_SEED, description="random seed; omitted: a random one"
    )
    prior: str | None = Field(
        default=None,
        max_length=512,
        description="a prior alias, an allowed hub id, or an operator-allowed folder/mesh",
    )
    steps: int | None = Field(default=None, ge=1, le=20000, description="coarse-stage steps")
    faces: int | None = Field(default=None, ge=100, le=500_000, description="target face count")
    texture_size: int | None = Field(default=None, ge=64, le=4096, description="texture resolution")
    overrides: dict[str, int | float | bool | str] = Field(
        default_factory=dict, max_length=32, description="extra numeric preset settings, e.g. coarse.steps"
    )


def _inside(path: Path, folders: list[Path]) -> bool:
    return any(path == f or path.is_relative_to(f) for f in folders)


def check_prior(spec: str, config: StudioConfig) -> str:
    """The prior spec as the worker will use it (absolute paths), or a DreamerError."""
    from dreamer.priors.weights import PRIOR_ALIASES

    spec = spec.strip()
    if spec in PRIOR_ALIASES or spec in config.allowed_priors or spec == config.default_prior:
        return spec
    if spec.startswith(_REFERENCE):
        path = Path(spec[len(_REFERENCE) :]).expanduser().resolve()
        if not _inside(path, config.reference_dirs):
            raise DreamerError("reference meshes may only come from the folders the operator allows")
        if not path.is_file() or path.suffix.lower() not in _REFERENCE_SUFFIXES:
            raise DreamerError(f"no reference mesh {path.name} in the allowed folders")
        return _REFERENCE + str(path)
    if config.model_dirs and "\x00" not in spec:
        folder = Path(spec).expanduser().resolve()
        if _inside(folder, config.model_dirs) and folder.is_dir():
            return str(folder)
    raise DreamerError(
        f"prior '{spec[:80]}' is not allowed here: use one of the built-in aliases "
        f"({', '.join(sorted(PRIOR_ALIASES))}) or one the operator allows"
    )


def _check_overrides(overrides: dict[str, object]) -> dict[str, object]:
    clean: dict[str, object] = {}
    for key, value in overrides.items():
        if not _KEY.match(key) or "path" in key or key.startswith("init.kind"):
            raise DreamerError(f"setting '{key[:60]}' cannot be changed here")
        if isinstance(value, str) and not _WORD.match(value):
            raise DreamerError(f"setting {key} takes a number or a short keyword, not '{value[:40]}'")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if value != value or abs(value) > 1e9:
                raise DreamerError(f"setting {key} is out of range")
            limit = COST_LIMITS.get(key)
            if limit is not None and value > limit:
                raise DreamerError(f"setting {key}={value} is above this server's limit of {limit:g}")
        clean[key] = value
    return clean


def validate_request(request: JobRequest, config: StudioConfig) -> dict:
    """Check a request fully (preset, prior, settings) and return the spec to store.

    Raises DreamerError with a one-line message; nothing heavy runs.
    """
    import random

    from dreamer.preset_files import preset_names
    from dreamer.presets import load_preset
    from dreamer.prompts import check_prompt

    texts = [
        request.prompt,
        request.negative or "",
        request.preset or "",
        request.prior or "",
        *map(str, request.overrides),
    ]
    if any("\x00" in t for t in texts):
        raise DreamerError("text fields may not contain NUL characters")
    prompt = check_prompt(request.prompt)
    names = preset_names()
    preset = request.preset or ("fast" if config.device == "cuda" else "cpu")
    if preset not in names:
        raise DreamerError(f"unknown preset '{preset[:64]}': choose one of {', '.join(names)}")
    user = _check_overrides(dict(request.overrides))
    for key, value in (
        ("coarse.steps", request.steps),
        ("extract.target_faces", request.faces),
        ("texture.resolution", request.texture_size),
    ):
        if value is not None:
            user[key] = value
    overrides = {**config.default_overrides, **user}
    asked_prior = request.prior or config.default_prior
    cfg = load_preset(preset, overrides, asked_prior)  # full schema check: unknown keys, types, ranges
    prior = check_prior(asked_prior, config) if asked_prior else cfg.prior
    from dreamer.priors.load import check_prior_available

    check_prior_available(prior)
    seed = request.seed if request.seed is not None else random.randint(0, MAX_SEED)
    negative = request.negative.strip() if request.negative else None
    return {
        "prompt": prompt,
        "negative": negative or None,
        "preset": preset,
        "seed": seed,
        "prior": prior,
        "overrides": overrides,
    }
