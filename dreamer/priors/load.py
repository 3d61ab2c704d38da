"""One place that turns a ``--prior`` spec into a prior: ``reference:PATH`` or a diffusers model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dreamer.errors import DreamerError

if TYPE_CHECKING:
    import torch

    from dreamer.priors.base import Prior

#: the ``--prior`` prefix of the reference prior (kept here, torch-free, for the early check)
REFERENCE_PREFIX = "reference:"


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
        from dreamer.representations.mesh_io import load_mesh

        path = Path(spec[len(REFERENCE_PREFIX) :]).expanduser()
        if not path.is_file():
            raise DreamerError(
                f"reference mesh {path} does not exist: pass --prior reference:PATH to a GLB, OBJ or PLY file"
            )
        load_mesh(path)  # unreadable meshes fail here, before the run folder exists
        return
    from dreamer.priors.weights import resolve_model

    resolve_model(spec)
