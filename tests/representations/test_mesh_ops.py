"""Mesh optimisation helpers: the smooth parameterisation and long-edge splitting."""

from __future__ import annotations

import numpy as np
import torch
import trimesh

from dreamer.representations.mesh_ops import SmoothParameterisation, split_long_edges, uniform_laplacian


def test_smooth_parameterisation_round_trips_and_has_the_solve_gradient() -> None:
    ico = trimesh.creation.icosphere(subdivisions=1)
    v = torch.tensor(ico.vertices, dtype=torch.float64)
    param = SmoothParameterisation(v, ico.faces, smoothing=5.0)
    assert torch.allclose(param.vertices(), v, atol=1e-10)
    M = torch.tensor(np.eye(len(v)) + 5.0 * uniform_laplacian(ico.faces, len(v)).toarray())
    weights = torch.randn_like(v)
    (param.vertices() * weights).sum().backward()
    assert torch.allclose(param.u.grad, torch.linalg.solve(M, weights), atol=1e-10)


def test_split_long_edges_keeps_the_mesh_closed_and_shortens_edges() -> None:
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    verts, faces = split_long_edges(np.asarray(box.vertices), np.asarray(box.faces), max_length=0.6)
    out = trimesh.Trimesh(verts, faces, process=False)
    assert out.is_watertight and out.is_winding_consistent
    assert len(faces) > len(box.faces)
    assert np.allclose(out.volume, 1.0)  # bisection does not move the surface
    assert np.allclose(verts[: len(box.vertices)], box.vertices)  # old vertices keep their indices
    edges = out.edges_unique_length
    assert edges.max() < np.sqrt(2.0) - 1e-9  # the longest (diagonal) edges were split
