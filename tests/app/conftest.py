"""Fixtures for the API/UI tests: a studio config allowed to use the demo duck, tiny settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dreamer.jobs.config import StudioConfig
from tests.jobs.conftest import DUCK, TINY

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture
def studio(tmp_path: Path) -> StudioConfig:
    return StudioConfig(
        root=tmp_path / "studio",
        db_url=None,
        workers=1,
        default_prior=f"reference:{DUCK}",
        default_overrides=dict(TINY),
        reference_dirs=[DUCK.parent],
        model_dirs=[],
        allowed_priors=[],
        max_queued=50,
        max_queued_per_user=5,
        tokens={},
        passwords={},
        retention_days=14,
        device="cpu",
    ).prepare()
