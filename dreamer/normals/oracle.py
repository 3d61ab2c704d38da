"""The oracle estimator: the reference mesh's own normals, seen from the same cameras.

It is what a perfect estimator would answer, so the polish stage can be measured against ground
truth. Normals are the visible faces' flat normals (sharp edges stay sharp), turned toward the
camera where the reference shows a face's back (open or double-sided meshes).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dreamer.normals.base import NormalEstimator, NormalPrediction
from dreamer.priors.base import Views
from dreamer.priors.reference import ReferencePrior


class OracleNormals(NormalEstimator):
    name = "oracle"

    def __init__(self, prior: ReferencePrior) -> None:
        self.prior = prior

    @torch.no_grad()
    def predict(self, images: Tensor, views: Views) -> NormalPrediction:
        B, H, W, _ = images.shape
        out = self.prior.render_views(views, H, W)
        normals = views.cameras.rotate_to_camera(out.face_normal_world)
        points = torch.einsum(
            "bij,bhwj->bhwi", views.cameras.w2c().to(out.position_world)[:, :3], _homogeneous(out.position_world)
        )
        away = (normals * points).sum(-1, keepdim=True) > 0  # facing away from the camera at the origin
        normals = torch.where(away, -normals, normals) * out.alpha
        # the outline antialiased like the polish stage's own coverage, so the two compare alike
        foreground = out.antialias(out.alpha)
        return NormalPrediction(
            normals=normals.to(images), confidence=out.alpha.to(images), foreground=foreground.to(images)
        )


def _homogeneous(x: Tensor) -> Tensor:
    return torch.cat([x, torch.ones_like(x[..., :1])], -1)
