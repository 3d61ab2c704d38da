"""Shared fixtures: a studio config in a temporary folder, allowed to use the demo duck."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dreamer.jobs.config import StudioConfig

REPO = Path(__file__).resolve().parents[2]
DUCK = REPO / "assets" / "demo" / "duck.glb"
TINY = {
    "coarse.steps": 20,
    "coarse.resolution": 32,
    "coarse.batch_size": 1,
    "init.num_points": 300,
    "extract.grid_resolution": 48,
    "extract.calibration_views": 4,
    "extract.calibration_resolution": 48,
    "extract.target_faces": 2000,
    "texture.resolution": 128,
    "texture.bake_resolution": 64,
    "texture.bake_azimuths": 4,
    "export.preview_size": 64,
}

os.environ.setdefault("HF_HUB_OFFLINE", "1")


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
