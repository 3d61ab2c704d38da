"""Objectives by name: the preset's ``objective.name`` picks the config class and the rule.

A visible dispatch table, not a registry: adding an objective means adding its module and one
line here (and to ``ObjectiveConfig``).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from dreamer.objectives.base import Objective
from dreamer.objectives.sds import SDS, SDSConfig
from dreamer.priors.base import Prior

#: the union presets validate against, discriminated by ``name``
ObjectiveConfig = Annotated[SDSConfig, Field(discriminator="name")]

OBJECTIVES: dict[str, type[Objective]] = {"sds": SDS}


def build_objective(prior: Prior, cfg: SDSConfig) -> Objective:
    return OBJECTIVES[cfg.name](prior, cfg)
