"""One place that turns the polish stage's ``estimator`` setting into a normal estimator.

``oracle``: the reference prior's mesh (only with ``--prior reference:PATH``).
``marigold`` or a hub id / folder: Marigold normals through diffusers.
``prior``: no estimator; the polish stage lets the prior judge rendered normal maps instead.
``auto``: the oracle with a reference prior, else Marigold if its weights are present, else ``prior``.
"""

from __future__ import annotations

import torch

from dreamer.errors import DreamerError
from dreamer.normals.base import NormalEstimator
from dreamer.priors.base import Prior


def load_normal_estimator(spec: str, prior: Prior, device: torch.device) -> NormalEstimator | None:
    """The estimator named by ``spec``, or None when the prior itself is the critic."""
    from dreamer.priors.reference import ReferencePrior

    if spec == "prior":
        return None
    if spec in ("oracle", "auto") and isinstance(prior, ReferencePrior):
        from dreamer.normals.oracle import OracleNormals

        return OracleNormals(prior)
    if spec == "oracle":
        raise DreamerError("polish.estimator 'oracle' needs --prior reference:PATH; use marigold, prior or auto")
    from dreamer.normals.marigold import load_marigold

    if spec == "auto":
        try:
            return load_marigold("marigold", device, download=False)
        except DreamerError:
            return None
    return load_marigold(spec, device)
