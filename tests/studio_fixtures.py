"""The studio fixtures the job and API/UI tests share: the demo duck, tiny run settings and a
studio config in a temporary folder allowed to use the duck. Both conftests import ``studio``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dreamer.jobs.config import StudioConfig
from tests.helpers import REPO, TINY_RUN

DUCK = REPO / "assets" / "demo" / "duck.glb"
TINY = TINY_RUN


def duck_studio_config(root: Path, **fields: Any) -> StudioConfig:
    """A studio under ``root`` whose jobs default to the duck and the tiny settings, with no model
    folders, no extra hub ids and no authentication; ``fields`` set the rest (or override these)."""
    base: dict[str, Any] = dict(
        root=root,
        default_prior=f"reference:{DUCK}",
        default_overrides=dict(TINY),
        reference_dirs=[DUCK.parent],
        model_dirs=[],
        allowed_priors=[],
        tokens={},
        passwords={},
        device="cpu",
    )
    return StudioConfig(**{**base, **fields})


@pytest.fixture
def studio(tmp_path: Path) -> StudioConfig:
    return duck_studio_config(
        tmp_path / "studio",
        db_url=None,
        workers=1,
        max_queued=50,
        max_queued_per_user=5,
        retention_days=14,
    ).prepare()
