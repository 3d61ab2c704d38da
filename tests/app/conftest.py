"""Fixtures for the API/UI tests: a studio config allowed to use the demo duck, tiny settings."""

from __future__ import annotations

import os

from tests.studio_fixtures import studio  # noqa: F401  (the fixture)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
