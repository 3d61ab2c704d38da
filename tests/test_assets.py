"""Benchmark assets: they build, fit the unit ball, carry colour, are closed; the mug and cup are hollow."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from bench.assets import ASSETS, build_assets
from dreamer.eval.metrics import sample_surface
from dreamer.representations.mesh_io import load_mesh


def winding_number(vertices: np.ndarray, faces: np.ndarray, point) -> float:
    """Generalised winding number: ~1 inside a closed outward-facing surface, ~0 outside."""
    tri = vertices[faces].astype(np.float64) - np.asarray(point, dtype=np.float64)
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    la, lb, lc = (np.linalg.norm(x, axis=1) for x in (a, b, c))
    num = np.einsum("ij,ij->i", a, np.cross(b, c))
    den = la * lb * lc + np.einsum("ij,ij->i", a, b) * lc + np.einsum("ij,ij->i", b, c) * la
    den += np.einsum("ij,ij->i", c, a) * lb
    return float(2 * np.arctan2(num, den).sum() / (4 * np.pi))


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("assets")
    paths = build_assets(folder)
    return {p.stem: load_mesh(p) for p in paths}


def test_all_assets_build(assets):
    assert set(assets) == set(ASSETS) >= {"table", "mug", "crate", "duck", "chair"}


@pytest.mark.parametrize("name", sorted(ASSETS))
def test_asset_is_valid(assets, name):
    mesh = assets[name]
    assert np.linalg.norm(mesh.vertices, axis=1).max() < 0.9
    assert mesh.has_texture or mesh.vertex_colors is not None
    colours = sample_surface(mesh, 5000, seed=0)[2]
    if name != "cup":  # the cup is one colour inside and out on purpose
        assert colours.std(0).max() > 0.05  # more than one colour
    closed = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    closed.merge_vertices()
    assert closed.is_watertight and closed.is_winding_consistent
    assert closed.volume > 0  # faces point outward
    assert mesh.vertices[:, 1].min() < -0.3  # stands on y, not lying down


def test_mug_is_hollow_with_a_through_handle(assets):
    mug = assets["mug"]
    assert winding_number(mug.vertices, mug.faces, (0.0, 0.1, 0.0)) == pytest.approx(0, abs=1e-3)  # cavity
    assert winding_number(mug.vertices, mug.faces, (0.39, 0.0, 0.0)) == pytest.approx(1, abs=1e-3)  # wall
    assert winding_number(mug.vertices, mug.faces, (0.0, -0.42, 0.0)) == pytest.approx(1, abs=1e-3)  # base
    assert winding_number(mug.vertices, mug.faces, (0.52, 0.0, 0.0)) == pytest.approx(0, abs=1e-3)  # hole
    assert winding_number(mug.vertices, mug.faces, (0.66, 0.0, 0.0)) == pytest.approx(1, abs=1e-3)  # handle


def test_cup_is_hollow_and_one_colour(assets):
    cup = assets["cup"]
    assert winding_number(cup.vertices, cup.faces, (0.0, 0.2, 0.0)) == pytest.approx(0, abs=1e-3)  # cavity
    assert winding_number(cup.vertices, cup.faces, (0.0, -0.3, 0.0)) == pytest.approx(1, abs=1e-3)  # base
    assert winding_number(cup.vertices, cup.faces, (0.37, 0.0, 0.0)) == pytest.approx(1, abs=1e-3)  # wall
    assert np.ptp(cup.vertex_colors, axis=0).max() == 0.0


def test_crate_symbol_only_on_the_front(assets):
    points, _, colours = sample_surface(assets["crate"], 60_000, seed=0)
    red = (colours[:, 0] > 0.7) & (colours[:, 1] < 0.2)
    front = points[:, 2] > 0.449
    assert red[front].mean() > 0.03 and not red[~front].any()
    # the blue dot sits at the front's top-right as seen from +z (x > 0, y > 0): no mirror, no flip
    blue = (colours[:, 2] > 0.7) & (colours[:, 0] < 0.2)
    assert blue[front].any() and np.all(points[blue, 0] > 0) and np.all(points[blue, 1] > 0)


def test_assets_are_deterministic(tmp_path):
    a = build_assets(tmp_path / "a", names=["duck", "crate"])
    b = build_assets(tmp_path / "b", names=["duck", "crate"])
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
