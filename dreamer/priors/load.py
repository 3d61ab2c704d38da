"""One place that turns a ``--prior`` spec into a prior: ``reference:PATH`` or a diffusers model."""

from __future__ import annotations

import torch

from dreamer.priors.base import Prior
from dreamer.priors.reference import PREFIX as REFERENCE_PREFIX


def load_prior(spec: str, device: torch.device) -> Prior:
    """Load the prior named by ``spec`` (an alias, hub id, local folder or ``reference:PATH``)."""
    if spec.startswith(REFERENCE_PREFIX):
        from dreamer.priors.reference import ReferencePrior

        return ReferencePrior.from_spec(spec, device)
    from dreamer.priors.diffusers_prior import load_diffusers_prior

    return load_diffusers_prior(spec, device)


def check_prior_available(spec: str) -> None:
    """Fail fast (one DreamerError line) when the prior's files are missing, before heavy work."""
    if spec.startswith(REFERENCE_PREFIX):
        from pathlib import Path

        from dreamer.errors import DreamerError

        path = Path(spec[len(REFERENCE_PREFIX) :]).expanduser()
        if not path.is_file():
            raise DreamerError(f"reference mesh {path} does not exist: pass --prior reference:PATH to a GLB, OBJ or PLY file")
        return
    from dreamer.priors.diffusers_prior import resolve_model

    resolve_model(spec)
