"""Mesh extraction from a density grid: only the outer surface becomes a mesh."""

from __future__ import annotations

import math

import numpy as np
import pytest
import trimesh

from dreamer.stages.extract import marching_cubes

RES, BOUND = 64, 1.0


def _points() -> np.ndarray:
    axis = np.linspace(-BOUND, BOUND, RES)
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1)


def _porous_shell() -> np.ndarray:
    """Density 1 in a shell 0.35 < r < 0.5 with six pores (0.05 wide, ~1.6 voxels) through it:
    the hollow inside reaches the outside, as through a coarse stage's gaps between Gaussians."""
    p = _points()
    r = np.linalg.norm(p, axis=-1)
    shell = (r > 0.35) & (r < 0.5)
    for axis in range(3):
        others = [k for k in range(3) if k != axis]
        pore = (np.abs(p[..., others[0]]) < 0.025) & (np.abs(p[..., others[1]]) < 0.025)
        shell &= ~pore
    return shell.astype(np.float32)


def _area(grid: np.ndarray, seal: int) -> tuple[float, int]:
    vertices, faces = marching_cubes(grid, 0.5, BOUND, seal)
    mesh = trimesh.Trimesh(vertices, faces, process=True)
    return float(mesh.area), len(mesh.split(only_watertight=False))


def test_a_porous_shell_is_meshed_as_its_outer_surface_once_pores_are_sealed():
    ball = (np.linalg.norm(_points(), axis=-1) < 0.5).astype(np.float32)
    outer, _ = _area(ball, seal=0)  # the solid ball, staircase and all
    unsealed, _ = _area(_porous_shell(), seal=0)
    sealed, parts = _area(_porous_shell(), seal=2)
    # unsealed: outer and inner sphere (0.35) joined through the pores
    assert unsealed > outer + 0.8 * 4 * math.pi * 0.35**2, unsealed
    assert sealed == pytest.approx(outer, rel=0.02) and parts == 1, (sealed, outer, parts)


def test_sealing_keeps_an_open_cavity_open():
    """A cup (outer r 0.4, inner r 0.3, open at the top) keeps its hollow: the mouth is far wider
    than any pore the closing seals."""
    p = _points()
    radial = np.hypot(p[..., 0], p[..., 2])
    body = (radial < 0.4) & (np.abs(p[..., 1]) < 0.4)
    cavity = (radial < 0.3) & (p[..., 1] > -0.2)
    grid = (body & ~cavity).astype(np.float32)
    solid_area, _ = _area(body.astype(np.float32), seal=0)
    cup_area, _ = _area(grid, seal=3)
    inner_walls = 2 * math.pi * 0.3 * 0.6
    assert cup_area > solid_area + 0.8 * inner_walls, (cup_area, solid_area)
