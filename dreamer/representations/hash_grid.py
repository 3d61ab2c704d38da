"""Multiresolution hash-grid encoding (Instant-NGP) in plain PyTorch.

The indexing follows tiny-cuda-nn exactly (grid scale ``base * s**l - 1``, the ``+0.5`` vertex
offset, dense levels while ``res**3`` fits the table, sizes rounded up to a multiple of 8, the
coherent prime XOR hash, ``% size`` on every level), so that a table trained here and one
trained with tcnn are interchangeable and the encoding behaves the same on both.

The fast path does ONE gather for all levels and corners: the backward of a gather is a
scatter-add into the table, which dominates the cost, and one large scatter beats ``8 * L``
small ones. ``reference_encode`` beside it is the plain per-level, per-corner loop the tests
compare against.
"""

from __future__ import annotations

import math
from typing import Annotated

import torch
from pydantic import Field
from torch import Tensor, nn

from dreamer.config import Strict

PRIMES = (1, 2654435761, 805459861)  # tcnn's coherent_prime_hash, one per dimension


class HashGridConfig(Strict):
    """Shape of the encoding: ``levels`` grids of ``features`` values each, coarsest first."""

    levels: Annotated[int, Field(gt=0)] = 16
    features: Annotated[int, Field(gt=0)] = 2
    log2_hashmap_size: Annotated[int, Field(gt=0)] = 19
    base_resolution: Annotated[int, Field(gt=0)] = 16
    per_level_scale: Annotated[float, Field(gt=0)] = 1.447269237440378


def level_layout(cfg: HashGridConfig) -> tuple[list[float], list[int], list[int], list[bool]]:
    """Per level: grid scale (double), resolution, table rows and whether it is dense."""
    T = 2**cfg.log2_hashmap_size
    scales, resolutions, sizes, dense = [], [], [], []
    for level in range(cfg.levels):
        scale = cfg.base_resolution * cfg.per_level_scale**level - 1.0
        res = math.ceil(scale) + 1
        scales.append(scale)
        resolutions.append(res)
        sizes.append(min(T, -(-(res**3) // 8) * 8))
        dense.append(res**3 <= T)
    return scales, resolutions, sizes, dense


class HashGrid(nn.Module):
    """Maps points of [0, 1]^3 to ``levels * features`` values, level-major."""

    def __init__(self, cfg: HashGridConfig) -> None:
        super().__init__()
        self.cfg = cfg
        scales, resolutions, sizes, dense = level_layout(cfg)
        offsets = [0]
        for size in sizes[:-1]:
            offsets.append(offsets[-1] + size)
        self.table = nn.Parameter(torch.empty(sum(sizes), cfg.features).uniform_(-1e-4, 1e-4))
        # Derived from cfg, so not part of a checkpoint (tcnn's state is its parameters only).
        self.register_buffer("scales", torch.tensor(scales, dtype=torch.float32), persistent=False)
        self.register_buffer("resolutions", torch.tensor(resolutions, dtype=torch.int64), persistent=False)
        self.register_buffer("dense", torch.tensor(dense), persistent=False)
        dense_mult = [[1, r, r * r] for r in resolutions]
        # Index arithmetic runs in int32 (half the memory traffic of int64): products wrap modulo
        # 2^32 exactly as tcnn's uint32 ones, so the low bits kept by the mask are the same; the
        # primes above 2^31 are stored as their two's-complement int32 values.
        signed_primes = [p - 2**32 if p >= 2**31 else p for p in PRIMES]
        mult = [dm if d else signed_primes for dm, d in zip(dense_mult, dense)]
        self.register_buffer("multipliers", torch.tensor(mult, dtype=torch.int32), persistent=False)
        self.register_buffer("sizes", torch.tensor(sizes, dtype=torch.int32), persistent=False)
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.int32), persistent=False)
        # Corner c of a cell is p0 + (bit d of c) in dimension d, x the lowest bit, as in tcnn; this is
        # the order of the corner axis of the fast path and the loop of ``reference_encode``.
        bits = [[(c >> d) & 1 for d in range(3)] for c in range(8)]
        self.register_buffer("corner_bits", torch.tensor(bits, dtype=torch.int64), persistent=False)

    @property
    def output_dim(self) -> int:
        return self.cfg.levels * self.cfg.features

    def forward(self, x: Tensor) -> Tensor:
        """[N, 3] points in [0, 1]^3 (clamped) -> [N, levels * features]."""
        n, levels = x.shape[0], self.cfg.levels
        # float32 like tcnn; float64 inputs stay float64 (exact gradient checks)
        x = x if x.dtype == torch.float64 else x.float()
        pos = x.clamp(0.0, 1.0)[:, None, :] * self.scales.to(x.dtype)[None, :, None] + 0.5  # [N, L, 3]
        p0f = torch.floor(pos)
        w = pos - p0f
        p0 = p0f.int()
        # Per dimension, the two corner coordinates times the level's multiplier ((1, res, res^2) when dense,
        # the primes when hashed); the 8 corners are then a broadcast over [N, L, z, y, x], so that corner
        # c = 4 z + 2 y + x sits at position c of the flattened axis (the order of ``corner_bits``).
        terms = torch.stack((p0, p0 + 1), dim=-1) * self.multipliers[:, :, None]  # [N, L, 3, 2]
        tx, ty, tz = terms[:, :, 0, None, None, :], terms[:, :, 1, None, :, None], terms[:, :, 2, :, None, None]
        lvl = (slice(None), None, None, None)
        sizes = self.sizes[lvl]
        # dense indices stay below twice the level's size (corners reach res, not beyond), so one
        # conditional subtraction is tcnn's modulo; hashed levels have power-of-two sizes
        summed = tx + ty + tz
        summed = summed - sizes * (summed >= sizes)
        idx = torch.where(self.dense[lvl], summed, (tx ^ ty ^ tz) & (sizes - 1)) + self.offsets[lvl]
        ws = torch.stack((1.0 - w, w), dim=-1)  # [N, L, 3, 2]
        weights = ws[:, :, 2, :, None, None] * ws[:, :, 1, None, :, None] * ws[:, :, 0, None, None, :]
        feats = self.table.index_select(0, idx.reshape(-1).long()).view(n, levels, 8, self.cfg.features)
        out = torch.einsum("nlc,nlcf->nlf", weights.reshape(n, levels, 8).to(feats.dtype), feats)
        return out.reshape(n, self.output_dim)


def reference_encode(grid: HashGrid, x: Tensor) -> Tensor:
    """The same encoding as ``grid(x)``, one level and one corner at a time (for tests)."""
    cfg = grid.cfg
    T = 2**cfg.log2_hashmap_size
    scales, resolutions, sizes, dense = level_layout(cfg)
    x = x.clamp(0.0, 1.0).float()
    outputs = []
    offset = 0
    for level in range(cfg.levels):
        pos = x * torch.tensor(scales[level], dtype=torch.float32) + 0.5
        p0 = torch.floor(pos)
        w = pos - p0
        p0 = p0.long()
        res, size = resolutions[level], sizes[level]
        out = torch.zeros(x.shape[0], cfg.features, dtype=grid.table.dtype, device=x.device)
        for corner in range(8):
            weight = torch.ones_like(w[:, 0])
            c = []
            for d in range(3):
                bit = int(grid.corner_bits[corner, d])
                c.append(p0[:, d] + bit)
                weight = weight * (w[:, d] if bit else 1.0 - w[:, d])
            if dense[level]:
                index = (c[0] + c[1] * res + c[2] * res * res) % size
            else:
                index = ((c[0] * PRIMES[0]) ^ (c[1] * PRIMES[1]) ^ (c[2] * PRIMES[2])) & (T - 1)
            out = out + weight[:, None] * grid.table[offset + index]
        outputs.append(out)
        offset += size
    return torch.cat(outputs, dim=1)
