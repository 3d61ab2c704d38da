"""Presets: complete, documented runs stored as YAML in ``presets/`` and validated strictly.

A preset file maps onto ``RunConfig``; every stage's section maps onto that stage's own config
class. A misspelt key, a wrong type or an out-of-range value is a one-line error that names it.
Command-line overrides (``--set coarse.steps=800``) go through the same validation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml

from dreamer.config import Strict, validate
from dreamer.errors import DreamerError
from dreamer.stages.coarse import CoarseConfig
from dreamer.stages.export import ExportConfig
from dreamer.stages.extract import ExtractConfig
from dreamer.stages.init import InitConfig
from dreamer.stages.texture import TextureConfig

PRESET_DIR = Path(os.environ.get("DREAMER_PRESETS", Path(__file__).resolve().parents[1] / "presets"))


class Expected(Strict):
    """What the preset costs, stated up front (users' first complaint is running out of memory)."""

    time: str
    memory: str


class RunConfig(Strict):
    description: str
    expected: Expected
    #: alias, hub id, local folder or reference:PATH; --prior overrides it
    prior: str = "sd21-base"
    negative_prompt: str = ""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    init: InitConfig = InitConfig()
    coarse: CoarseConfig = CoarseConfig()
    extract: ExtractConfig = ExtractConfig()
    texture: TextureConfig = TextureConfig()
    export: ExportConfig = ExportConfig()


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise DreamerError(f"cannot read preset {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise DreamerError(f"preset {path} is not valid YAML{where}: {getattr(err, 'problem', err)}") from None
    if not isinstance(data, dict):
        raise DreamerError(f"preset {path} must be a mapping of settings")
    return data


def resolve_preset_path(name_or_file: str) -> Path:
    path = Path(name_or_file).expanduser()
    if path.suffix in (".yaml", ".yml") or os.sep in name_or_file:
        if not path.is_file():
            raise DreamerError(f"preset file {path} does not exist")
        return path
    candidate = PRESET_DIR / f"{name_or_file}.yaml"
    if not candidate.is_file():
        raise DreamerError(f"unknown preset '{name_or_file}': choose one of {', '.join(preset_names())}, or pass a YAML file")
    return candidate


def apply_overrides(data: dict, overrides: dict[str, object]) -> dict:
    """Set dotted keys (``coarse.objective.guidance_scale``) in a nested mapping (a copy)."""
    import copy

    data = copy.deepcopy(data)
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise DreamerError(f"cannot set {dotted}: {key} is not a section")
            node = child
        node[leaf] = value
    return data


def parse_override(text: str) -> tuple[str, object]:
    """``key=value`` with the value read as YAML (numbers, lists, null), for ``--set``."""
    if "=" not in text:
        raise DreamerError(f"--set expects KEY=VALUE, got '{text}'")
    key, raw = text.split("=", 1)
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError:
        return key.strip(), raw


def load_preset(name_or_file: str, overrides: dict[str, object] | None = None) -> RunConfig:
    path = resolve_preset_path(name_or_file)
    data = apply_overrides(_read_yaml(path), overrides or {})
    return validate(RunConfig, data, f"preset {path.stem}")  # type: ignore[return-value]


def config_from_dict(data: dict, source: str) -> RunConfig:
    return validate(RunConfig, data, source)  # type: ignore[return-value]
