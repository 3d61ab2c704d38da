"""Presets: complete, documented runs stored as YAML in ``presets/`` and validated strictly.

A preset file maps onto ``RunConfig``; every stage's section maps onto that stage's own config
class. A misspelt key, a wrong type or an out-of-range value is a one-line error that names it.
Command-line overrides (``--set coarse.steps=800``) go through the same validation.
"""

from __future__ import annotations

from typing import Literal

from dreamer.config import Strict, validate
from dreamer.preset_files import apply_overrides, read_preset, resolve_preset_path
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


def load_preset(name_or_file: str, overrides: dict[str, object] | None = None) -> RunConfig:
    path = resolve_preset_path(name_or_file)
    data = apply_overrides(read_preset(path), overrides or {})
    return validate(RunConfig, data, f"preset {path.stem}")  # type: ignore[return-value]


def config_from_dict(data: dict, source: str) -> RunConfig:
    return validate(RunConfig, data, source)  # type: ignore[return-value]
