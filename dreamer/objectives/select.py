"""Objectives by name: the preset's ``objective.name`` picks the config class and the rule.

A visible dispatch table, not a registry: adding an objective means adding its module and one
line here (and to ``ObjectiveConfig``).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from dreamer.objectives.asd import ASD, ASDConfig
from dreamer.objectives.base import Objective
from dreamer.objectives.bsd import BSD, BSDConfig
from dreamer.objectives.cds import CDS, CDSConfig
from dreamer.objectives.csd import CSD, CSDConfig
from dreamer.objectives.dds import DDS, DDSConfig
from dreamer.objectives.dsd import DSD, DSDConfig
from dreamer.objectives.esd import ESD, ESDConfig
from dreamer.objectives.ism import ISM, ISMConfig
from dreamer.objectives.nfsd import NFSD, NFSDConfig
from dreamer.objectives.sds import SDS, SDSConfig
from dreamer.objectives.vsd import VSD, VSDConfig
from dreamer.priors.base import Prior

#: the union presets validate against, discriminated by ``name``
ObjectiveConfig = Annotated[
    SDSConfig
    | VSDConfig
    | ESDConfig
    | DSDConfig
    | ASDConfig
    | CSDConfig
    | BSDConfig
    | CDSConfig
    | ISMConfig
    | NFSDConfig
    | DDSConfig,
    Field(discriminator="name"),
]

OBJECTIVES: dict[str, type[Objective]] = {
    "sds": SDS,
    "vsd": VSD,
    "esd": ESD,
    "dsd": DSD,
    "asd": ASD,
    "csd": CSD,
    "bsd": BSD,
    "cds": CDS,
    "ism": ISM,
    "nfsd": NFSD,
    "dds": DDS,
}


def build_objective(prior: Prior, cfg: Any) -> Objective:
    return OBJECTIVES[cfg.name](prior, cfg)
