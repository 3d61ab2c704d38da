"""Fixtures for the job tests: a studio config in a temporary folder, allowed to use the demo duck."""

from __future__ import annotations

import os

from tests.studio_fixtures import studio  # noqa: F401  (the fixture)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
