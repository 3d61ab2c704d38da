"""Fixtures shared by the stage tests."""

import pytest

from dreamer.export.mesh_export import save_glb
from tests.helpers import coloured_box


@pytest.fixture(scope="module")
def box_path(tmp_path_factory):
    """A GLB of the six-coloured box, the reference mesh of the pipeline tests."""
    path = tmp_path_factory.mktemp("assets") / "box.glb"
    save_glb(coloured_box(), path)
    return path
