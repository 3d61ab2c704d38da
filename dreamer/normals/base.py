"""The normal-estimator contract: a shaded render in, per-pixel camera-space normals out.

Every estimator answers in ONE frame, the OpenGL camera frame of ``dreamer.cameras``: x right,
y up, z toward the viewer (a surface facing the camera is (0, 0, +1)). That is Marigold's frame
too; an estimator with another convention converts inside its own module (see
``../shared/reference/geometry-and-normals.md`` section 0), never in the polish stage.

Estimators are inference-only: their predictions are fixed targets (no gradient flows through).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from torch import Tensor

from dreamer.priors.base import Views


@dataclass
class NormalPrediction:
    """Per-pixel targets for a batch of B renders, images with row 0 at the TOP.

    Attributes:
        normals: [B, H, W, 3] unit vectors in the OpenGL camera frame (zeros where unknown).
        confidence: [B, H, W, 1] in [0, 1]: how much each pixel's normal is trusted (0 = ignore).
        foreground: [B, H, W, 1] in [0, 1] where the estimator knows the object's silhouette
            (the oracle does), else None: the caller then relies on its own rendered alpha.
    """

    normals: Tensor
    confidence: Tensor
    foreground: Tensor | None = None


class NormalEstimator(ABC):
    """Predicts the normals of what a batch of renders shows."""

    #: hub id, local folder or ``oracle``; recorded in run.json
    name: str

    @abstractmethod
    def predict(self, images: Tensor, views: Views) -> NormalPrediction:
        """Normals of ``images`` [B, H, W, 3] in [0, 1] (shaded renders over ``views.background``).

        ``views`` carries the cameras (the oracle renders its mesh from them; image-based
        estimators may ignore them).
        """

    def describe(self) -> dict:
        return {"name": self.name, "class": type(self).__name__}
