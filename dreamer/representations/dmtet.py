"""DMTet: an explicit SDF value and a bounded deformation per vertex of a regular tetrahedral
grid; marching tetrahedra turns them into a triangle mesh each step, differentiably.

A mesh rendered by rasterisation is sharp where a volume is blurry, so this is the stage that
makes the surface precise. The deformation is capped at half a grid cell (``tanh``), as in
threestudio, so tetrahedra cannot invert. The colour comes from an implicit field (the NeuS
stage's, inherited), looked up at the mesh's vertices.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dreamer.representations.fields import ImplicitField
from dreamer.representations.tets import TetGrid, marching_tets


class DMTet(nn.Module):
    def __init__(self, resolution: int, bound: float, colour: ImplicitField):
        super().__init__()
        self.grid = TetGrid.regular(resolution, bound)
        n = self.grid.vertices.shape[0]
        self.sdf = nn.Parameter(torch.zeros(n))
        self.deformation = nn.Parameter(torch.zeros(n, 3))
        self.colour = colour

    @property
    def grid_vertices(self) -> Tensor:
        return self.grid.vertices

    def positions(self) -> Tensor:
        """Deformed grid vertices, each within half a cell of its rest position."""
        return self.grid.vertices + torch.tanh(self.deformation) * (0.5 * self.grid.cell_size)

    def mesh(self) -> tuple[Tensor, Tensor]:
        """(vertices [M, 3], faces [F, 3]) of the zero level set, outward-facing; vertices carry
        gradients to ``sdf`` and ``deformation``."""
        return marching_tets(self.grid, self.positions(), self.sdf)

    def vertex_colours(self, vertices: Tensor) -> Tensor:
        return self.colour.albedo(vertices)
