"""Finding and reading preset files, without importing torch (the CLI checks a run's prior
before any heavy import, so that missing weights are reported within a second).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import yaml

from dreamer.errors import DreamerError

PRESET_DIR = Path(os.environ.get("DREAMER_PRESETS", Path(__file__).resolve().parents[1] / "presets"))


def default_preset() -> str:
    """``fast`` on a machine with an NVIDIA driver, ``cpu`` elsewhere (no torch import needed)."""
    return "fast" if Path("/proc/driver/nvidia/version").exists() else "cpu"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def read_preset(path: Path) -> dict:
    """The raw mapping of a preset file; unreadable or non-mapping YAML is one DreamerError line."""
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
        raise DreamerError(
            f"unknown preset '{name_or_file}': choose one of {', '.join(preset_names())}, or pass a YAML file"
        )
    return candidate


def merge_sections(base: dict, over: dict) -> dict:
    """``base`` with ``over``'s settings laid over it, section by section (a copy)."""
    merged = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_sections(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def apply_overrides(data: dict, overrides: dict[str, object]) -> dict:
    """Set dotted keys (``coarse.objective.guidance_scale``) in a nested mapping (a copy)."""
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
