"""Presets: complete, documented runs stored as YAML in ``presets/`` and validated strictly.

A preset file maps onto ``RunConfig``; every stage's section maps onto that stage's own config
class. A misspelt key, a wrong type or an out-of-range value is a one-line error that names it.
Command-line overrides (``--set coarse.steps=800``) go through the same validation.

A preset that serves several priors may hold a ``for_prior`` section: settings laid over the
rest when the run's prior is given by that name (``--prior shapes``), before ``--set``; every
such section is validated whichever prior runs.
"""

from __future__ import annotations

from typing import Literal

from dreamer.config import Strict, validate
from dreamer.errors import DreamerError
from dreamer.preset_files import apply_overrides, merge_sections, read_preset, resolve_preset_path
from dreamer.stages.coarse import CoarseConfig
from dreamer.stages.dmtet import DMTetConfig
from dreamer.stages.edit import EditConfig
from dreamer.stages.export import ExportConfig
from dreamer.stages.extract import ExtractConfig
from dreamer.stages.init import InitConfig
from dreamer.stages.nerf import NerfConfig
from dreamer.stages.neus import NeusConfig
from dreamer.stages.polish import PolishConfig
from dreamer.stages.texture import TextureConfig


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
    #: how geometry is built before polishing: 3D Gaussians (init, coarse, extract) or
    #: DreamPolish's progressive route (nerf, neus, dmtet)
    route: Literal["gaussians", "progressive"] = "gaussians"
    init: InitConfig = InitConfig()
    coarse: CoarseConfig = CoarseConfig()
    extract: ExtractConfig = ExtractConfig()
    nerf: NerfConfig = NerfConfig()
    neus: NeusConfig = NeusConfig()
    dmtet: DMTetConfig = DMTetConfig()
    polish: PolishConfig = PolishConfig()
    texture: TextureConfig = TextureConfig()
    export: ExportConfig = ExportConfig()
    #: DDS editing of a finished run (dreamer edit); not used by dreamer generate
    edit: EditConfig = EditConfig()


def load_preset(
    name_or_file: str, overrides: dict[str, object] | None = None, prior: str | None = None
) -> RunConfig:
    """The preset's settings for a run of ``prior`` (default: the override's or the preset's own)."""
    path = resolve_preset_path(name_or_file)
    data = read_preset(path)
    variants = data.pop("for_prior", {})
    if not isinstance(variants, dict) or not all(isinstance(v, dict) and "prior" not in v for v in variants.values()):
        raise DreamerError(f"preset {path.stem}: for_prior must map prior names to settings (other than prior)")
    for name, variant in variants.items():
        validate(RunConfig, merge_sections(data, variant), f"preset {path.stem} for_prior.{name}")
    overrides = overrides or {}
    chosen = prior or overrides.get("prior") or data.get("prior")
    if isinstance(chosen, str) and chosen in variants:
        data = merge_sections(data, variants[chosen])
    return validate(RunConfig, apply_overrides(data, overrides), f"preset {path.stem}")  # type: ignore[return-value]


def config_from_dict(data: dict, source: str) -> RunConfig:
    return validate(RunConfig, data, source)  # type: ignore[return-value]
