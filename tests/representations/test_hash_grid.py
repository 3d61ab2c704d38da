"""Hash-grid encoding: the fast path against the plain loop, and tcnn's indexing rules by hand."""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from dreamer.representations.hash_grid import HashGrid, HashGridConfig, reference_encode

SMALL = HashGridConfig(levels=6, features=2, log2_hashmap_size=12, base_resolution=4, per_level_scale=2.0)


def test_fast_forward_and_table_gradient_match_the_reference() -> None:
    torch.manual_seed(0)
    grid = HashGrid(SMALL)
    assert grid.dense.tolist() == [True, True, True, False, False, False]  # both kinds occur
    with torch.no_grad():
        grid.table.normal_()
    x = torch.rand(500, 3)
    x[:5] = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.5], [1.0, 0.0, 0.25], [0.5, 0.5, 0.5]])
    upstream = torch.randn(500, grid.output_dim)

    fast = grid(x)
    (fast * upstream).sum().backward()
    fast_grad = grid.table.grad.clone()
    grid.table.grad = None
    ref = reference_encode(grid, x)
    (ref * upstream).sum().backward()

    assert fast.shape == (500, 12)
    assert torch.allclose(fast, ref, atol=1e-5)
    assert torch.allclose(fast_grad, grid.table.grad, atol=1e-5)
    assert fast_grad.abs().sum() > 0


# Two levels, T = 128: level 0 has scale 4, res 5, 125 rows (dense, padded to 128);
# level 1 has scale 9, res 10, 1000 > 128 vertices (hashed, 128 rows).
TINY = HashGridConfig(levels=2, features=1, log2_hashmap_size=7, base_resolution=5, per_level_scale=2.0)


def _arange_grid() -> HashGrid:
    grid = HashGrid(TINY)
    with torch.no_grad():
        grid.table.copy_(torch.arange(256, dtype=torch.float32)[:, None] * 0.5 + 1.0)
    return grid


def _by_hand(table: np.ndarray, point: tuple[float, float, float]) -> list[float]:
    """tcnn's rules, written out with Python ints (uint32 wrap as % 2**32)."""
    out = []
    for scale, offset, dense in [(4.0, 0, True), (9.0, 128, False)]:
        pos = [np.float32(p) * np.float32(scale) + np.float32(0.5) for p in point]
        p0 = [math.floor(p) for p in pos]
        w = [float(p - f) for p, f in zip(pos, p0)]
        value = 0.0
        for bz, by, bx in itertools.product((0, 1), repeat=3):
            c = (p0[0] + bx, p0[1] + by, p0[2] + bz)
            if dense:
                index = (c[0] + c[1] * 5 + c[2] * 25) % 128
            else:
                h = (c[0] * 1) % 2**32 ^ (c[1] * 2654435761) % 2**32 ^ (c[2] * 805459861) % 2**32
                index = h % 128
            weight = 1.0
            for bit, wd in zip((bx, by, bz), w):
                weight *= wd if bit else 1.0 - wd
            value += weight * float(table[offset + index, 0])
        out.append(value)
    return out


def test_tcnn_indexing_rules_by_hand() -> None:
    grid = _arange_grid()
    assert grid.dense.tolist() == [True, False]
    assert grid.table.shape == (256, 1)
    table = grid.table.detach().numpy()
    points = [(0.3, 0.55, 0.8), (0.01, 0.99, 0.42), (1.0, 1.0, 1.0), (0.0, 0.7, 1.0)]
    got = grid(torch.tensor(points))
    for row, point in zip(got, points):
        assert np.allclose(row.detach().numpy(), _by_hand(table, point), atol=1e-4), point


def test_grid_vertex_and_half_cell_offset() -> None:
    grid = _arange_grid()
    row = lambda i: 0.5 * i + 1.0  # table value at row i

    # x = 0.125: level 0 pos = 4 * 0.125 + 0.5 = 1.0 exactly -> all weight on vertex (1, 1, 1).
    out = grid(torch.tensor([[0.125, 0.125, 0.125]]))[0]
    assert out[0].item() == row(1 + 1 * 5 + 1 * 25)

    # x = 0: pos = 0.5 (not 0) -> the eight corners of cell (0, 0, 0) blend equally, on both levels.
    out = grid(torch.tensor([[0.0, 0.0, 0.0]]))[0]
    dense_rows = [x + 5 * y + 25 * z for x, y, z in itertools.product((0, 1), repeat=3)]
    assert math.isclose(out[0].item(), sum(row(i) for i in dense_rows) / 8, rel_tol=1e-6)
    hashed_rows = [
        128 + (((x * 1) ^ (y * 2654435761) ^ (z * 805459861)) % 2**32) % 128
        for x, y, z in itertools.product((0, 1), repeat=3)
    ]
    assert hashed_rows == [128 + r for r in (0, 21, 49, 36, 1, 20, 48, 37)]
    assert math.isclose(out[1].item(), sum(row(i) for i in hashed_rows) / 8, rel_tol=1e-6)

    # Hashed vertex: level 1 pos = 9 * 0.5 + 0.5 = 5 exactly -> vertex (5, 5, 5) alone.
    out = grid(torch.tensor([[0.5, 0.5, 0.5]]))[0]
    h = (5 ^ (5 * 2654435761) ^ (5 * 805459861)) % 2**32
    assert out[1].item() == row(128 + h % 128)


def test_input_gradient_and_double_backward() -> None:
    torch.manual_seed(1)
    grid = HashGrid(SMALL)
    with torch.no_grad():
        grid.table.normal_()
    x = torch.rand(64, 3, requires_grad=True)
    upstream = torch.randn(64, grid.output_dim)
    (gx,) = torch.autograd.grad((grid(x) * upstream).sum(), x, create_graph=True)
    assert torch.isfinite(gx).all() and gx.abs().sum() > 0
    (gx_ref,) = torch.autograd.grad((reference_encode(grid, x) * upstream).sum(), x)
    assert torch.allclose(gx, gx_ref, rtol=1e-4, atol=1e-4)
    gx.pow(2).sum().backward()  # e.g. an eikonal loss on analytic normals
    assert torch.isfinite(grid.table.grad).all() and grid.table.grad.abs().sum() > 0

    # Central differences on one coarse level, away from cell faces (pos fractions 0.4, 0.85, 0.3).
    coarse = HashGrid(HashGridConfig(levels=1, features=3, base_resolution=4))
    with torch.no_grad():
        coarse.table.normal_()
    p = torch.tensor([[0.3, 0.45, 0.6]], requires_grad=True)
    weights = torch.tensor([1.0, -2.0, 0.5])
    (g,) = torch.autograd.grad((coarse(p)[0] * weights).sum(), p)
    eps = 1e-3
    for d in range(3):
        step = torch.zeros(1, 3)
        step[0, d] = eps
        with torch.no_grad():
            fd = ((coarse(p + step)[0] - coarse(p - step)[0]) * weights).sum() / (2 * eps)
        assert math.isclose(g[0, d].item(), fd.item(), rel_tol=1e-2, abs_tol=1e-2)


def test_default_config_matches_tcnn_parameter_count() -> None:
    cfg = HashGridConfig()
    grid = HashGrid(cfg)
    T = 2**19
    expected, dense = 0, []
    for level in range(16):
        res = math.ceil(16 * 1.447269237440378**level - 1) + 1
        expected += min(T, (res**3 + 7) // 8 * 8)
        dense.append(res**3 <= T)
    assert dense == [True] * 5 + [False] * 11
    assert grid.dense.tolist() == dense
    assert grid.resolutions[:6].tolist() == [16, 24, 34, 49, 71, 102]
    assert grid.table.numel() == expected * 2
    assert grid.table.shape == (4096 + 13824 + 39304 + 117656 + 357912 + 11 * T, 2)
    assert grid.output_dim == 32
    assert grid(torch.rand(10, 3)).shape == (10, 32)
    assert grid.table.abs().max() <= 1e-4
    assert [n for n, _ in grid.named_parameters()] == ["table"]
