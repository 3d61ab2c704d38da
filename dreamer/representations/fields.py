"""Neural fields of the progressive route (NeRF, then NeuS): one hash-grid encoding shared by a
geometry head and an albedo head, small MLPs, points in the cube [-radius, radius]^3.

* :class:`DensityField` (NeRF): ``sigma = softplus(head(x) + blob(x))`` with Magic3D's blob
  ``s * (1 - |x| / r)``, so the first renders show a soft ball rather than fog.
* :class:`SDFField` (NeuS): ``sdf = head(x) + |x| - r``, negative inside; opacity from the SDF
  with a learned sharpness ``exp(10 v)`` (NeuS's discretisation).

Normals are analytic, the gradient of the geometry through the encoding, taken with
``create_graph`` while training: shading then moves the geometry, which is the whole point of
shaded renders (a cup's hollow shows only in its shading).
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from dreamer.config import Strict
from dreamer.representations.hash_grid import HashGrid, HashGridConfig
from renderers.volume import density_to_alpha

Positive = Annotated[float, Field(gt=0)]


class FieldConfig(Strict):
    encoding: HashGridConfig = HashGridConfig()
    hidden: Annotated[int, Field(gt=0)] = 64
    #: half the side of the cube the field covers (scene units)
    radius: Positive = 1.0


class ImplicitField(nn.Module):
    """Encoding + geometry head (1 output) + albedo head (3 outputs, sigmoid)."""

    def __init__(self, cfg: FieldConfig):
        super().__init__()
        self.cfg = cfg
        self.encoding = HashGrid(cfg.encoding)
        self.geometry_head = _mlp(self.encoding.output_dim, cfg.hidden, 1)
        self.albedo_head = _mlp(self.encoding.output_dim, cfg.hidden, 3)

    def encode(self, x: Tensor) -> Tensor:
        return self.encoding(x / (2.0 * self.cfg.radius) + 0.5)

    def geometry_bias(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def geometry(self, x: Tensor) -> Tensor:
        """[N] raw geometry value (pre-activation density, or SDF)."""
        return self.geometry_head(self.encode(x)).squeeze(-1) + self.geometry_bias(x)

    def albedo(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.albedo_head(self.encode(x)))

    def occupancy(self, x: Tensor, step: float) -> Tensor:
        """[N] opacity of a render step of length ``step`` at ``x`` (for occupancy grids); no normals."""
        raise NotImplementedError

    def geometry_albedo_gradient(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Raw geometry [N], albedo [N, 3] and d geometry / dx [N, 3] from one encoder pass;
        the gradient keeps its graph while the module trains (shading and eikonal losses)."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            enc = self.encode(x)
            geometry = self.geometry_head(enc).squeeze(-1) + self.geometry_bias(x)
            (grad,) = torch.autograd.grad(geometry.sum(), x, create_graph=self.training)
        albedo = torch.sigmoid(self.albedo_head(enc))
        if not self.training:
            geometry, albedo = geometry.detach(), albedo.detach()
        return geometry, albedo, grad


class DensityField(ImplicitField):
    def __init__(self, cfg: FieldConfig, blob_strength: float = 10.0, blob_radius: float = 0.5):
        super().__init__(cfg)
        self.blob_strength, self.blob_radius = blob_strength, blob_radius
        #: the density of the field's surface, chosen when training ends (nan until then)
        self.register_buffer("surface_level", torch.tensor(float("nan")))

    def geometry_bias(self, x: Tensor) -> Tensor:
        return self.blob_strength * (1.0 - x.norm(dim=-1) / self.blob_radius)

    def density(self, x: Tensor) -> Tensor:
        return F.softplus(self.geometry(x))

    def occupancy(self, x: Tensor, step: float) -> Tensor:
        return density_to_alpha(self.density(x), torch.full_like(x[:, 0], step))

    def alpha(self, points: Tensor, dirs: Tensor, deltas: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The volume renderer's ``alpha_fn``: opacity per sample, albedo and outward unit normals."""
        raw, albedo, grad = self.geometry_albedo_gradient(points)
        sigma = F.softplus(raw)
        # density grows inward, so the outward normal is -grad(sigma) (softplus' > 0: same direction)
        normal = F.normalize(-grad, dim=-1)
        return density_to_alpha(sigma, deltas), {"albedo": albedo, "normal": normal}


class SDFField(ImplicitField):
    def __init__(self, cfg: FieldConfig, sphere_radius: float = 0.5, initial_variance: float = 0.3):
        super().__init__(cfg)
        self.sphere_radius = sphere_radius
        #: NeuS's learned variance v; sharpness s = exp(10 v)
        self.variance = nn.Parameter(torch.tensor(float(initial_variance)))
        #: NeuS's cosine annealing ratio, 0 -> 1 over the first steps of training (set by the stage)
        self.cos_anneal = 1.0

    def geometry_bias(self, x: Tensor) -> Tensor:
        return x.norm(dim=-1) - self.sphere_radius

    def sdf(self, x: Tensor) -> Tensor:
        return self.geometry(x)

    @property
    def sharpness(self) -> Tensor:
        return torch.exp(10.0 * self.variance).clamp(1e-6, 1e6)

    def occupancy(self, x: Tensor, step: float) -> Tensor:
        return self._segment_alpha(self.sdf(x), torch.full_like(x[:, 0], -1.0), step)

    def _segment_alpha(self, sdf: Tensor, cos: Tensor, deltas: Tensor | float) -> Tensor:
        """NeuS's opacity of a segment whose SDF changes by ``cos * delta`` along it."""
        s = self.sharpness
        prev_cdf = torch.sigmoid(s * (sdf - cos * deltas * 0.5))
        next_cdf = torch.sigmoid(s * (sdf + cos * deltas * 0.5))
        return ((prev_cdf - next_cdf + 1e-5) / (prev_cdf + 1e-5)).clamp(0.0, 1.0)

    def alpha(self, points: Tensor, dirs: Tensor, deltas: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """NeuS's discrete opacity from the SDF at both ends of each segment (estimated along the
        ray with the annealed cosine), plus albedo, unit normals and the gradient norm (eikonal)."""
        sdf, albedo, grad = self.geometry_albedo_gradient(points)
        cos = (dirs * grad).sum(-1)
        r = self.cos_anneal
        cos = -(F.relu(-cos * 0.5 + 0.5) * (1.0 - r) + F.relu(-cos) * r)
        alpha = self._segment_alpha(sdf, cos, deltas)
        samples = {"albedo": albedo, "normal": F.normalize(grad, dim=-1), "grad_norm": grad.norm(dim=-1), "sdf": sdf}
        return alpha, samples


def _mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    """threestudio's field MLP: one hidden ReLU layer, no biases (the encoding supplies offsets)."""
    return nn.Sequential(nn.Linear(inputs, hidden, bias=False), nn.ReLU(), nn.Linear(hidden, outputs, bias=False))
