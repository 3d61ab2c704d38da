"""Mesh metrics against analytic values."""

from __future__ import annotations

import numpy as np
import trimesh

from dreamer.eval.metrics import sample_surface, score_meshes
from dreamer.representations.mesh import TexturedMesh


def _sphere(radius: float, colour=(0.5, 0.5, 0.5), kind: str = "ico") -> TexturedMesh:
    if kind == "ico":
        s = trimesh.creation.icosphere(subdivisions=5, radius=radius)
    else:
        s = trimesh.creation.uv_sphere(radius=radius, count=[160, 160])
    return TexturedMesh(s.vertices, s.faces, vertex_colors=np.tile(colour, (len(s.vertices), 1)))


def test_identical_meshes_score_perfectly():
    mesh = _sphere(0.5)
    scores = score_meshes(mesh, mesh, n=20_000)
    assert scores["chamfer_l1"] < 1e-9
    assert scores["fscore@0.02"] == 1.0 and scores["fscore@0.05"] == 1.0
    assert abs(scores["normal_consistency"] - 1.0) < 1e-6
    assert scores["color_error"] < 1e-9


def test_scaled_sphere_matches_analytic_chamfer():
    # different tessellations, so the samples are not paired; radii 0.5 and 0.525: distance 0.025
    scores = score_meshes(_sphere(0.525, kind="uv"), _sphere(0.5), n=50_000)
    assert abs(scores["chamfer_l1"] - 0.025) < 0.1 * 0.025
    assert scores["fscore@0.02"] < 0.05  # every surface point is 0.025 away
    assert scores["fscore@0.05"] > 0.99
    assert scores["normal_consistency"] > 0.98


def test_colour_error_red_vs_blue():
    # |1-0| + |0-0| + |0-1| over three channels = 2/3
    scores = score_meshes(_sphere(0.5, (1, 0, 0)), _sphere(0.5, (0, 0, 1), kind="uv"), n=20_000)
    assert abs(scores["color_error"] - 2 / 3) < 1e-6


def test_samples_are_area_weighted_and_textured_colours_are_read():
    # two quads of area 1 and 3 side by side, a texture left half red, right half green
    vertices = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [4, 0, 0], [4, 1, 0]], float)
    faces = np.array([[0, 1, 2], [0, 2, 3], [1, 4, 5], [1, 5, 2]])
    uvs = np.array([[0.1, 0.5], [0.1, 0.5], [0.1, 0.5], [0.1, 0.5], [0.9, 0.5], [0.9, 0.5]])
    uvs[[1, 2]] = [0.9, 0.5]
    texture = np.zeros((4, 8, 3), np.float32)
    texture[:, :4] = [1, 0, 0]
    texture[:, 4:] = [0, 1, 0]
    mesh = TexturedMesh(vertices, faces, uvs=uvs, texture=texture)
    points, normals, colors = sample_surface(mesh, 40_000, seed=1)
    assert abs((points[:, 0] < 1).mean() - 0.25) < 0.01
    assert np.allclose(np.abs(normals[:, 2]), 1)
    left = points[:, 0] < 1
    assert np.allclose(colors[left & (points[:, 0] < 0.2)], [1, 0, 0], atol=1e-6)
    assert np.allclose(colors[~left], [0, 1, 0], atol=1e-6)
    again, _, _ = sample_surface(mesh, 40_000, seed=1)
    assert np.array_equal(points, again)
