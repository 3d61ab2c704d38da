"""Property-based fuzzing of every API operation from its OpenAPI schema: no server errors."""

from __future__ import annotations

import os

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from app.server import create_app  # noqa: E402
from tests.studio_fixtures import duck_studio_config  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _app(tmp_root):
    config = duck_studio_config(tmp_root, max_queued=10_000, max_queued_per_user=10_000)
    return create_app(config, start_workers=False, with_ui=False)


import tempfile  # noqa: E402

_ROOT = tempfile.mkdtemp(prefix="dreamer-schemathesis-")
APP = _app(__import__("pathlib").Path(_ROOT))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case):
    response = case.call()
    assert response.status_code < 500, (response.status_code, response.text[:500])
    case.validate_response(response, checks=[not_a_server_error])
