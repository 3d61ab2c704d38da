"""The progressive route's colour source: colours come from where the field was trained."""

from __future__ import annotations

import numpy as np
import torch
import trimesh

from dreamer.cameras import orbit_cameras
from dreamer.representations.mesh import TexturedMesh
from dreamer.stages.colour_sources import field_colour_source

WHITE, BLUE = (1.0, 1.0, 1.0), (0.1, 0.2, 0.9)


class HeightColours(torch.nn.Module):
    """A colour field that is white above y = 0.3 and blue below (a cup's rim and its floor)."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def albedo(self, points: torch.Tensor) -> torch.Tensor:
        upper = (points[:, 1:2] > 0.3).float()
        return upper * torch.tensor(WHITE) + (1 - upper) * torch.tensor(BLUE)


def _box(top: float) -> TexturedMesh:
    box = trimesh.creation.box(bounds=[[-0.4, -0.5, -0.4], [0.4, top, 0.4]])
    return TexturedMesh(vertices=np.asarray(box.vertices, np.float32), faces=np.asarray(box.faces, np.int32))


def test_a_sunken_surface_takes_the_colour_the_field_learned_along_the_ray():
    trained, sunk = _box(0.5), _box(-0.3)  # polishing carved the top down by 0.8
    from_above = orbit_cameras(89.0, 0.0, 2.5, 30.0)
    moved = field_colour_source(HeightColours(), sunk, trained)(from_above, 32)[0, 16, 16]
    in_place = field_colour_source(HeightColours(), sunk, sunk)(from_above, 32)[0, 16, 16]
    assert torch.allclose(moved, torch.tensor(WHITE))  # the trained top's colour, not the floor's
    assert torch.allclose(in_place, torch.tensor(BLUE))


def test_where_the_surface_stayed_it_is_coloured_where_it_is():
    trained = _box(0.5)
    side = orbit_cameras(0.0, 0.0, 2.5, 30.0)
    image = field_colour_source(HeightColours(), trained, trained)(side, 64)[0]
    column = image[:, 32]
    assert torch.allclose(column[8], torch.tensor(WHITE)) and torch.allclose(column[44], torch.tensor(BLUE))
    assert torch.allclose(image[1, 1], torch.full((3,), 0.5))  # grey where nothing is hit
