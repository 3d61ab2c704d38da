"""3D Gaussians: parameters, initialisation, rendering and the common 3DGS PLY layout.

Parameters are stored unconstrained (log scales, opacity and colour logits) and activated on
use. Colours are plain RGB (spherical-harmonics degree 0); the PLY file stores them as SH DC
coefficients so that common viewers show the right colours.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from dreamer.cameras import Cameras
from dreamer.errors import DreamerError
from dreamer.export.files import atomic_path
from dreamer.representations.base import RenderOut
from renderers.gaussians import rasterize_gaussians
from renderers.gaussians.torch_backend import quat_to_rotmat

SH_C0 = 0.28209479177387814
PARAM_NAMES = ("means", "log_scales", "quats", "opacity_logits", "color_logits")


def _logit(p: Tensor) -> Tensor:
    p = p.clamp(1e-4, 1 - 1e-4)
    return torch.log(p / (1 - p))


def nearest_neighbour_distance(points: Tensor, k: int = 3) -> Tensor:
    """[N] mean distance to the k nearest other points (scipy's KD-tree; no N^2 matrix)."""
    from scipy.spatial import cKDTree

    pts = points.detach().cpu().numpy()
    d, _ = cKDTree(pts).query(pts, k=k + 1, workers=-1)
    return torch.as_tensor(d[:, 1:].mean(1), dtype=points.dtype).clamp_min(1e-4)


class Gaussians(nn.Module):
    """N anisotropic 3D Gaussians with opacity and RGB colour."""

    def __init__(self, means: Tensor, scales: Tensor, colors: Tensor, opacities: Tensor, quats: Tensor | None = None):
        super().__init__()
        n = means.shape[0]
        if quats is None:
            quats = torch.zeros(n, 4)
            quats[:, 0] = 1.0
        self.means = nn.Parameter(means.float().contiguous())
        self.log_scales = nn.Parameter(torch.log(scales.float().clamp_min(1e-6)).contiguous())
        self.quats = nn.Parameter(quats.float().contiguous())
        self.opacity_logits = nn.Parameter(_logit(opacities.float()).contiguous())
        self.color_logits = nn.Parameter(_logit(colors.float()).contiguous())

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def from_points(cls, points: Tensor, colors: Tensor, opacity: float = 0.1, scale_factor: float = 1.0) -> Gaussians:
        """Isotropic Gaussians at the points, sized by the local point spacing."""
        scale = nearest_neighbour_distance(points) * scale_factor
        return cls(points, scale[:, None].expand(-1, 3), colors, torch.full((points.shape[0],), opacity))

    @classmethod
    def blob(
        cls,
        n: int,
        radii: tuple[float, float, float],
        generator: torch.Generator,
        color: float = 0.5,
        opacity: float = 0.1,
    ) -> Gaussians:
        """Points uniform in an ellipsoid (DreamGaussian-style start), grey."""
        direction = torch.randn(n, 3, generator=generator)
        direction = direction / direction.norm(dim=-1, keepdim=True)
        radius = torch.rand(n, 1, generator=generator) ** (1.0 / 3.0)
        points = direction * radius * torch.tensor(radii)
        colors = torch.full((n, 3), color) + 0.05 * torch.randn(n, 3, generator=generator)
        return cls.from_points(points, colors.clamp(0.05, 0.95), opacity=opacity)

    # -- activated views ----------------------------------------------------------------------
    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def scales(self) -> Tensor:
        return torch.exp(self.log_scales)

    @property
    def opacities(self) -> Tensor:
        return torch.sigmoid(self.opacity_logits)

    @property
    def colors(self) -> Tensor:
        return torch.sigmoid(self.color_logits)

    @property
    def normalised_quats(self) -> Tensor:
        return self.quats / self.quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def covariances(self) -> Tensor:
        """[N, 3, 3] world-space covariances R S S R^T."""
        M = quat_to_rotmat(self.normalised_quats) * self.scales[:, None, :]
        return M @ M.transpose(1, 2)

    # -- rendering ------------------------------------------------------------------------------
    def render(self, cameras: Cameras, height: int, width: int, background: Tensor) -> RenderOut:
        """Render B cameras over ``background`` [B, 3]; ``self.last_means2d`` keeps the 2D means."""
        cams = cameras.to(self.means.device)
        out = rasterize_gaussians(
            self.means,
            self.normalised_quats,
            self.scales,
            self.opacities,
            self.colors,
            cams.viewmats(),
            cams.intrinsics(height, width),
            width,
            height,
            backgrounds=background.to(self.means),
        )
        self.last_means2d = out.means2d
        self.last_radii = out.radii
        return RenderOut(rgb=out.rgb, alpha=out.alpha, depth=out.depth)

    # -- file I/O ---------------------------------------------------------------------------------
    def save_ply(self, path: Path) -> None:
        """The layout of the original 3DGS code (SH degree 3 with zero higher bands), so
        SIBR, SuperSplat and other viewers open it."""
        with torch.no_grad():
            fields = {
                "x": self.means[:, 0], "y": self.means[:, 1], "z": self.means[:, 2],
                "nx": torch.zeros(len(self)), "ny": torch.zeros(len(self)), "nz": torch.zeros(len(self)),
            }
            dc = (self.colors - 0.5) / SH_C0
            for i in range(3):
                fields[f"f_dc_{i}"] = dc[:, i]
            for i in range(45):
                fields[f"f_rest_{i}"] = torch.zeros(len(self))
            fields["opacity"] = self.opacity_logits
            for i in range(3):
                fields[f"scale_{i}"] = self.log_scales[:, i]
            for i in range(4):
                fields[f"rot_{i}"] = self.normalised_quats[:, i]
            data = np.stack([v.detach().cpu().float().numpy() for v in fields.values()], -1).astype("<f4")
        header = "ply\nformat binary_little_endian 1.0\n" f"element vertex {len(self)}\n"
        header += "".join(f"property float {name}\n" for name in fields) + "end_header\n"
        with atomic_path(Path(path)) as tmp, open(tmp, "wb") as f:
            f.write(header.encode("ascii"))
            f.write(data.tobytes())

    @classmethod
    def load_ply(cls, path: Path) -> Gaussians:
        """Read a 3DGS PLY (float properties, binary little endian), as written by save_ply or 3DGS."""
        path = Path(path)
        try:
            raw = path.read_bytes()
            end = raw.index(b"end_header\n") + len(b"end_header\n")
            header = raw[:end].decode("ascii").splitlines()
        except (OSError, ValueError, UnicodeDecodeError) as err:
            raise DreamerError(f"cannot read Gaussians from {path}: {err}") from None
        if "format binary_little_endian 1.0" not in header:
            raise DreamerError(f"{path}: only binary little-endian 3DGS PLY files are supported")
        names = [line.split()[-1] for line in header if line.startswith("property")]
        if any(line.startswith("property") and line.split()[1] != "float" for line in header):
            raise DreamerError(f"{path}: expected float properties only (3DGS layout)")
        count = next(int(line.split()[-1]) for line in header if line.startswith("element vertex"))
        data = np.frombuffer(raw[end:], dtype="<f4", count=count * len(names)).reshape(count, len(names))
        col = {name: torch.from_numpy(data[:, i].copy()) for i, name in enumerate(names)}
        try:
            means = torch.stack([col["x"], col["y"], col["z"]], -1)
            colors = (0.5 + SH_C0 * torch.stack([col[f"f_dc_{i}"] for i in range(3)], -1)).clamp(0, 1)
            scales = torch.exp(torch.stack([col[f"scale_{i}"] for i in range(3)], -1))
            quats = torch.stack([col[f"rot_{i}"] for i in range(4)], -1)
            opacities = torch.sigmoid(col["opacity"])
        except KeyError as err:
            raise DreamerError(f"{path}: not a 3DGS PLY (missing property {err})") from None
        return cls(means, scales, colors, opacities, quats)

    def extent(self) -> float:
        """Radius of the ball around the origin holding the Gaussians' centres (scene scale)."""
        return float(self.means.detach().norm(dim=-1).max().clamp_min(1e-3)) if len(self) else 1.0


def gaussians_from_state(state: dict[str, Tensor]) -> Gaussians:
    """Rebuild from ``state_dict()`` (sizes change during densification, so no in-place load)."""
    g = Gaussians(torch.zeros(1, 3), torch.ones(1, 3), torch.full((1, 3), 0.5), torch.full((1,), 0.5))
    for name in PARAM_NAMES:
        setattr(g, name, nn.Parameter(state[name].float().contiguous()))
    return g
