"""Where the texture stage reads colours from: renders of the representation that learned them.

Texturing bakes these renders onto the polished mesh's atlas (dreamer/stages/texture.py). The
Gaussian route renders its coarse Gaussians; the progressive route queries DMTet's colour field
on the polished surface.
"""

from __future__ import annotations

import torch

from dreamer.representations.fields import SDFField
from dreamer.representations.gaussians import Gaussians
from dreamer.representations.mesh import TexturedMesh
from renderers.mesh import render_mesh

#: scene units a polished surface point may lie off the trained surface, along the pixel's ray,
#: and still be coloured where it is (the DMTet grid's cell is about 0.03 in the cpu route)
MOVED_ALONG_RAY = 0.02


def field_colour_source(colour: SDFField, mesh: TexturedMesh, trained: TexturedMesh):
    """Renders of ``mesh`` coloured by the field (over grey), for baking.

    The field learned colours only on the DMTet surface (``trained``): where polishing moved the
    surface along a pixel's ray (a cup's carved hollow), the field there was never supervised,
    so such pixels take the colour of the point where the ray meets the trained surface, which
    is what the prior saw along that ray."""
    device = next(colour.parameters()).device

    def tensors(m: TexturedMesh) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.as_tensor(m.vertices, device=device), torch.as_tensor(m.faces, device=device).long()

    polished, surface = tensors(mesh), tensors(trained)

    def render(cams, size: int) -> torch.Tensor:
        cams = cams.to(device)
        args = (cams.mvp(size, size), cams.w2c(), (size, size))
        with torch.no_grad():
            out = render_mesh(*polished, *args)
            seen = render_mesh(*surface, *args)
            moved = (seen.alpha > 0) & ((out.depth - seen.depth).abs() > MOVED_ALONG_RAY)
            points = torch.where(moved, seen.position_world, out.position_world)
            albedo = colour.albedo(points.reshape(-1, 3)).view_as(points)
        return albedo * out.alpha + 0.5 * (1.0 - out.alpha)

    return render


def gaussian_colour_source(gaussians: Gaussians):
    """Renders of the coarse Gaussians over grey, for baking."""

    def render(cams, size: int) -> torch.Tensor:
        with torch.no_grad():
            return gaussians.render(cams, size, size, torch.full((len(cams), 3), 0.5)).rgb

    return render
