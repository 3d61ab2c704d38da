"""DMTet's tet grid and marching tetrahedra: grid validity, closed outward meshes, gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh

from dreamer.representations.tets import TET_EDGES, TetGrid, marching_tets, regular_tet_grid, signed_volumes, tet_edges


def _sphere(grid: TetGrid, radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    positions = grid.vertices.double()
    return positions, positions.norm(dim=1) - radius


@pytest.mark.parametrize("resolution", [1, 3])
def test_regular_grid_is_a_positive_conforming_tiling_of_the_cube(resolution: int) -> None:
    bound = 0.75
    vertices, tets = regular_tet_grid(resolution, bound)
    assert vertices.shape == ((resolution + 1) ** 3, 3) and vertices.dtype == torch.float32
    assert tets.shape == (6 * resolution**3, 4) and tets.dtype == torch.int64
    assert vertices.min() == -bound and vertices.max() == bound

    volumes = signed_volumes(vertices.double(), tets)
    assert (volumes > 0).all()
    assert math.isclose(volumes.sum().item(), (2 * bound) ** 3, rel_tol=1e-9)

    # each tet face, as a sorted triple: interior ones shared by exactly 2 tets, boundary ones by 1
    faces = tets[:, [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]]].reshape(-1, 3).sort(dim=1).values
    unique, counts = torch.unique(faces, dim=0, return_counts=True)
    assert set(counts.tolist()) <= {1, 2}
    corners = vertices[unique]  # [F, 3 corners, 3]
    same_plane = (corners == corners[:, :1]).all(dim=1) & (corners[:, 0].abs() == bound)  # [F, axis]
    on_boundary = same_plane.any(dim=1)  # all three corners on one face of the cube
    assert torch.equal(on_boundary, counts == 1)
    assert int((counts == 1).sum()) == 6 * 2 * resolution**2


def test_tet_edges_map_each_tet_edge_to_its_unique_row() -> None:
    _, tets = regular_tet_grid(2, 1.0)
    edges, index = tet_edges(tets)
    assert index.shape == (len(tets), 6)
    assert (edges[:, 0] < edges[:, 1]).all()
    assert len(torch.unique(edges, dim=0)) == len(edges)
    for e, (i, j) in enumerate(TET_EDGES):
        expected = torch.sort(tets[:, [i, j]], dim=1).values
        assert torch.equal(edges[index[:, e]], expected)
    # the Kuhn split of an R^3 lattice has 3R(R+1)^2 axis, 3R^2(R+1) face-diagonal and R^3 body-diagonal edges
    assert len(edges) == 3 * 2 * 9 + 3 * 4 * 3 + 8


@pytest.mark.parametrize("case", range(1, 15))
def test_every_case_is_wound_toward_positive_sdf(case: int) -> None:
    torch.manual_seed(case)
    vertices = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    grid = TetGrid(vertices, torch.tensor([[0, 1, 2, 3]]))
    sign = torch.tensor([1.0 if case >> i & 1 else -1.0 for i in range(4)])
    sdf = sign * (0.2 + torch.rand(4))
    verts, faces = marching_tets(grid, vertices, sdf)
    assert len(faces) == (1 if sign.sum().abs() == 2 else 2)
    assert sorted(torch.unique(faces).tolist()) == list(range(len(verts)))  # no unreferenced vertices
    tri = verts[faces]
    normals = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    outward = vertices[sign > 0].mean(0) - vertices[sign < 0].mean(0)
    assert (normals @ outward > 0).all()


def test_sphere_is_closed_close_to_the_surface_and_outward() -> None:
    radius, resolution = 0.6, 24
    grid = TetGrid.regular(resolution, 1.0)
    positions, sdf = _sphere(grid, radius)
    verts, faces = marching_tets(grid, positions, sdf)
    assert faces.dtype == torch.int64 and faces.shape[1] == 3 and len(faces) > 1000
    assert sorted(torch.unique(faces).tolist()) == list(range(len(verts)))

    v, f = verts.numpy(), faces.numpy()
    mesh = trimesh.Trimesh(v, f, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.euler_number == 2  # one sphere-like component
    # no duplicated positions: each crossing edge gives exactly one vertex
    assert len(np.unique(np.round(v, 9), axis=0)) == len(v)

    # linear interpolation of the exact SDF along an edge lands slightly inside the sphere: measured
    # max |r - 0.6| = 0.049 cell at R = 24; assert a tenth of a cell (a whole cell would prove little)
    error = np.abs(np.linalg.norm(v, axis=1) - radius)
    assert error.max() < 0.1 * grid.cell_size

    tri = v[f]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    centroids = tri.mean(axis=1)
    dots = np.einsum("ij,ij->i", normals, centroids)
    assert dots.mean() > 0
    assert (dots > 0).all()

    exact = 4.0 / 3.0 * math.pi * radius**3
    assert mesh.volume > 0
    assert abs(mesh.volume - exact) / exact < 0.02  # measured -0.97% (chords cut inside the sphere)


def test_gradients_match_finite_differences() -> None:
    grid = TetGrid.regular(2, 1.0)
    positions = grid.vertices.double()
    # perturb the lattice so the deformation matters, and keep every sdf value away from 0
    positions = positions + 0.05 * torch.sin(3.0 * positions.flip(1))
    center = torch.tensor([0.1, -0.05, 0.07], dtype=torch.float64)
    sdf = (positions - center).norm(dim=1) - 0.55
    assert sdf.abs().min() > 0.05
    plane = positions @ torch.tensor([0.8, 0.5, 0.3], dtype=torch.float64) - 0.1
    assert plane.abs().min() > 0.05

    for values in (sdf, plane):
        p = positions.clone().requires_grad_(True)
        s = values.clone().requires_grad_(True)
        verts, faces = marching_tets(grid, p, s)
        assert len(faces) > 0
        verts.sum().backward()
        assert p.grad.abs().sum() > 0 and s.grad.abs().sum() > 0
        assert torch.autograd.gradcheck(lambda pp, ss: marching_tets(grid, pp, ss)[0], (p, s))


def test_no_surface_gives_empty_outputs() -> None:
    grid = TetGrid.regular(3, 1.0)
    for sdf in (torch.ones(len(grid.vertices)), -torch.ones(len(grid.vertices))):
        verts, faces = marching_tets(grid, grid.vertices, sdf)
        assert verts.shape == (0, 3) and verts.dtype == torch.float32
        assert faces.shape == (0, 3) and faces.dtype == torch.int64


def test_grid_moves_with_to_and_exposes_cell_size() -> None:
    grid = TetGrid.regular(4, 0.5).to(torch.device("cpu"))
    assert grid.cell_size == pytest.approx(0.25)
    assert {name for name, _ in grid.named_buffers()} == {"vertices", "tets", "edges", "tet_edge_index"}
    assert grid.state_dict() == {}  # rebuilt from (resolution, bound), never saved
