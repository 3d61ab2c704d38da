"""Mesh operations for optimising a surface: a smooth parameterisation, regularisers, refinement.

Moving vertices one by one with Adam tangles a mesh within a few hundred steps (self-
intersections, flipped faces). Nicolet et al., "Large Steps in Inverse Rendering of Geometry"
(SIGGRAPH Asia 2021), optimise ``u = (I + lam L) v`` instead: a gradient step on u becomes a
smooth, low-frequency step on v. Here L is the combinatorial Laplacian, factorised once per
topology with SciPy's sparse LU (no CUDA extension needed).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from torch import Tensor


def unique_edges(faces: np.ndarray) -> np.ndarray:
    """[E, 2] sorted vertex pairs of every edge, each once."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    return np.unique(np.sort(e, axis=1), axis=0)


def uniform_laplacian(faces: np.ndarray, num_vertices: int) -> sp.csr_matrix:
    """L = D - A of the mesh graph (positive semi-definite)."""
    e = unique_edges(faces)
    rows = np.concatenate([e[:, 0], e[:, 1]])
    cols = np.concatenate([e[:, 1], e[:, 0]])
    adj = sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(num_vertices, num_vertices)).tocsr()
    return (sp.diags(np.asarray(adj.sum(1)).ravel()) - adj).tocsr()


class _Solve(torch.autograd.Function):
    """v = M^-1 u with a prefactorised symmetric M; the backward pass is the same solve."""

    @staticmethod
    def forward(ctx, u: Tensor, solver) -> Tensor:  # type: ignore[override]
        ctx.solver = solver
        return torch.from_numpy(solver.solve(u.detach().cpu().double().numpy())).to(u)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return torch.from_numpy(ctx.solver.solve(grad.detach().cpu().double().numpy())).to(grad), None


class SmoothParameterisation:
    """Vertices as ``v = (I + lam L)^-1 u`` (Large Steps); optimise ``u``, read ``vertices()``."""

    def __init__(self, vertices: Tensor, faces: np.ndarray, smoothing: float) -> None:
        n = vertices.shape[0]
        self.matrix = (sp.identity(n) + smoothing * uniform_laplacian(faces, n)).tocsc()
        self._solver = spla.splu(self.matrix)
        u0 = self.matrix @ vertices.detach().cpu().double().numpy()
        self.u = torch.nn.Parameter(torch.from_numpy(u0).to(vertices))

    def vertices(self) -> Tensor:
        return _Solve.apply(self.u, self._solver)


def face_normals(vertices: Tensor, faces: Tensor) -> Tensor:
    f = faces.long()
    n = torch.linalg.cross(vertices[f[:, 1]] - vertices[f[:, 0]], vertices[f[:, 2]] - vertices[f[:, 0]])
    return torch.nn.functional.normalize(n, dim=-1)


def face_pairs(faces: np.ndarray) -> np.ndarray:
    """[P, 2] indices of faces sharing an edge (manifold edges only)."""
    F = len(faces)
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    owner = np.tile(np.arange(F), 3)
    _, inverse, counts = np.unique(e, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    order = np.argsort(inverse, kind="stable")
    shared = counts[inverse[order]] == 2
    pairs = owner[order][shared].reshape(-1, 2)
    return pairs


def normal_consistency(vertices: Tensor, faces: Tensor, pairs: Tensor) -> Tensor:
    """Mean ``1 - cos`` between the normals of adjacent faces (0 for a plane)."""
    n = face_normals(vertices, faces)
    return (1.0 - (n[pairs[:, 0]] * n[pairs[:, 1]]).sum(-1)).mean()


def split_long_edges(vertices: np.ndarray, faces: np.ndarray, max_length: float) -> tuple[np.ndarray, np.ndarray]:
    """Bisect every edge longer than ``max_length`` (longest first, one split edge per face per
    pass, a few passes), keeping the mesh conforming: the two faces beside an edge both split.

    Returns new (vertices, faces); old vertex indices are unchanged, new vertices are appended.
    """
    verts = [vertices]
    faces = faces.copy()
    count = len(vertices)
    for _ in range(4):
        allv = np.concatenate(verts)
        e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
        length = np.linalg.norm(allv[e[:, 0]] - allv[e[:, 1]], axis=1)
        owner = np.tile(np.arange(len(faces)), 3)
        long_ = np.nonzero(length > max_length)[0]
        if len(long_) == 0:
            break
        long_ = long_[np.argsort(-length[long_], kind="stable")]
        used = np.zeros(len(faces), bool)
        chosen: dict[tuple[int, int], int] = {}
        edge_faces: dict[tuple[int, int], list[int]] = {}
        for k in range(len(e)):
            edge_faces.setdefault((e[k, 0], e[k, 1]), []).append(owner[k])
        for k in long_:
            key = (int(e[k, 0]), int(e[k, 1]))
            if key in chosen:
                continue
            adj = edge_faces[key]
            if used[adj].any():
                continue
            used[adj] = True
            chosen[key] = count
            count += 1
        if not chosen:
            break
        keys = np.array(list(chosen.keys()))
        verts.append(0.5 * (allv[keys[:, 0]] + allv[keys[:, 1]]))
        new_faces = []
        keep = np.ones(len(faces), bool)
        for f_idx in np.nonzero(used)[0]:
            a, b, c = faces[f_idx]
            for p, q, r in ((a, b, c), (b, c, a), (c, a, b)):
                mid = chosen.get((min(p, q), max(p, q)))
                if mid is not None:
                    new_faces += [(p, mid, r), (mid, q, r)]
                    keep[f_idx] = False
                    break
        faces = np.concatenate([faces[keep], np.array(new_faces, dtype=faces.dtype).reshape(-1, 3)])
    return np.concatenate(verts), faces
