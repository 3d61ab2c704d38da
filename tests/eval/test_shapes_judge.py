"""The shapes judge and the 3D grading: independent of the diffusion model they grade."""

from __future__ import annotations

import numpy as np
import pytest

from dreamer.eval.shapes import colour_distance, load_judge, mean_surface_colour, nearest_primitive
from dreamer.priors.shapes.dataset import make_dataset
from dreamer.priors.shapes.world import COLOUR_NAMES, SHAPES, canonical_mesh


def test_shipped_judge_reads_unseen_renders():
    data = make_dataset(3, seed=99, progress=False)  # a seed neither the judge nor the prior trained on
    shapes, colours = load_judge().classify(data.unit_images())
    assert np.mean([SHAPES[s] == p for s, p in zip(data.shape, shapes)]) >= 0.95
    assert np.mean([COLOUR_NAMES[c] == p for c, p in zip(data.colour, colours)]) >= 0.95


@pytest.mark.parametrize("shape", SHAPES)
def test_nearest_primitive_finds_a_slightly_deformed_primitive(shape: str):
    mesh = canonical_mesh(shape, "green")
    rng = np.random.default_rng(0)
    mesh = mesh.copy(vertices=(mesh.vertices * 1.04 + rng.normal(0, 0.005, mesh.vertices.shape)).astype(np.float32))
    nearest, distances = nearest_primitive(mesh, n=5000)
    assert nearest == shape and distances[shape] < 0.03
    assert colour_distance(mean_surface_colour(mesh, n=2000), "green") < 1e-5
    assert colour_distance(mean_surface_colour(mesh, n=2000), "blue") > 0.15
