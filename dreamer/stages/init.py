"""The init stage: where the Gaussians start (an ellipsoid blob, a user mesh or a point cloud)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from dreamer.config import Strict
from dreamer.errors import DreamerError
from dreamer.representations.gaussians import Gaussians
from dreamer.representations.mesh_io import load_mesh
from dreamer.stages.context import RunContext


class InitConfig(Strict):
    kind: Literal["blob", "mesh", "points"] = "blob"
    num_points: Annotated[int, Field(gt=0)] = 4000
    #: semi-axes of the blob (x, y, z)
    radii: tuple[float, float, float] = (0.5, 0.5, 0.5)
    #: mesh (GLB/OBJ/PLY) or point cloud (PLY/XYZ) for kind mesh/points
    path: str | None = None
    opacity: Annotated[float, Field(gt=0, lt=1)] = 0.1

    @model_validator(mode="after")
    def _path_when_needed(self) -> InitConfig:
        if self.kind != "blob" and not self.path:
            raise ValueError(f"init kind '{self.kind}' needs a path")
        return self


def load_point_cloud(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Points [N, 3] and colours [N, 3] in [0, 1] (grey when the file has none)."""
    import trimesh

    if not path.is_file():
        raise DreamerError(f"point cloud {path} does not exist: pass an existing PLY or XYZ file")
    try:
        if path.suffix.lower() == ".xyz":
            data = np.loadtxt(path, dtype=np.float32, ndmin=2)
            pts = data[:, :3]
            cols = data[:, 3:6] / (255.0 if data[:, 3:6].max(initial=0) > 1 else 1.0) if data.shape[1] >= 6 else None
        else:
            cloud = trimesh.load(path, process=False)
            pts = np.asarray(cloud.vertices, dtype=np.float32)
            raw = getattr(cloud, "colors", None)
            if raw is None or len(raw) == 0:
                raw = getattr(getattr(cloud, "visual", None), "vertex_colors", None)
            cols = None if raw is None or len(raw) != len(pts) else np.asarray(raw)[:, :3] / 255.0
    except Exception as err:  # trimesh raises many kinds of errors for bad files
        raise DreamerError(f"cannot read point cloud {path}: {err}") from None
    if len(pts) == 0:
        raise DreamerError(f"point cloud {path} has no points")
    if cols is None:
        cols = np.full_like(pts, 0.5)
    return pts.astype(np.float32), np.asarray(cols, dtype=np.float32)


def run_init(ctx: RunContext) -> Gaussians:
    cfg = ctx.cfg.init
    gen = ctx.generator(0)
    if cfg.kind == "blob":
        return Gaussians.blob(cfg.num_points, cfg.radii, gen, opacity=cfg.opacity)
    path = Path(cfg.path).expanduser()
    if cfg.kind == "mesh":
        from dreamer.eval.metrics import sample_surface

        points, _, colors = sample_surface(load_mesh(path), cfg.num_points, seed=ctx.seed)
    else:
        points, colors = load_point_cloud(path)
        if len(points) > cfg.num_points:
            pick = torch.randperm(len(points), generator=gen)[: cfg.num_points].numpy()
            points, colors = points[pick], colors[pick]
    return Gaussians.from_points(
        torch.as_tensor(points, dtype=torch.float32), torch.as_tensor(colors, dtype=torch.float32), opacity=cfg.opacity
    )
