"""The reference prior: a coloured or textured mesh posing as a denoiser.

For a camera c its clean-image estimate is the mesh's render r(c), made the way the stage renders
its own representation (albedo, or albedo under the stage's light), over the same background.
Its noise prediction is ``eps_hat = (x_t - alpha_t r(c)) / sigma_t``, so every objective that
compares eps_hat with something pulls renders toward r(c): running the pipeline with it is a
multi-view reconstruction that can be scored against the mesh. It ignores the prompt.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from dreamer.priors.base import Branch, Prior, Prompt, Views
from dreamer.priors.load import REFERENCE_PREFIX as PREFIX
from dreamer.representations.mesh import TexturedMesh
from dreamer.representations.mesh_io import load_mesh
from dreamer.shading import shade
from renderers.mesh import MeshRender, render_mesh


def sd_alphas_cumprod(num_train_timesteps: int = 1000) -> Tensor:
    """Stable Diffusion's "scaled_linear" schedule, so that t means the same as with SD."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, num_train_timesteps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, 0).float()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


class ReferencePrior(Prior):
    uses_text = False

    def __init__(
        self, mesh: TexturedMesh, name: str, device: torch.device, revision: str | None = None
    ) -> None:
        self.name = name
        self.revision = revision
        self.device = torch.device(device)
        self.mesh = mesh
        self.sample_size = 0  # any resolution: the reference renders at the size it is asked for
        self._alphas_cumprod = sd_alphas_cumprod().to(self.device)
        as_t = lambda a: None if a is None else torch.as_tensor(a, device=self.device)
        self._vertices = as_t(mesh.vertices)
        self._faces = as_t(mesh.faces)
        self._colors = as_t(mesh.vertex_colors)
        self._uvs = as_t(mesh.uvs)
        self._texture = as_t(mesh.texture)
        if self._colors is None and self._texture is None:
            self._colors = torch.full_like(self._vertices, 0.8)

    @classmethod
    def from_spec(cls, spec: str, device: torch.device) -> ReferencePrior:
        """``reference:PATH`` -> a prior; unreadable meshes raise DreamerError (from load_mesh)."""
        path = Path(spec[len(PREFIX) :] if spec.startswith(PREFIX) else spec).expanduser()
        mesh = load_mesh(path)
        return cls(mesh, name=PREFIX + str(path), device=device, revision=file_digest(path))

    @property
    def alphas_cumprod(self) -> Tensor:
        return self._alphas_cumprod

    def encode(self, images: Tensor) -> Tensor:
        return images.permute(0, 3, 1, 2) * 2.0 - 1.0

    def decode(self, x: Tensor) -> Tensor:
        return ((x.permute(0, 2, 3, 1) + 1.0) * 0.5).clamp(0.0, 1.0)

    def encode_prompt(self, text: str, negative: str = "") -> Prompt:
        return Prompt(text=text, negative=negative)

    def render_views(self, views: Views, height: int, width: int) -> MeshRender:
        """The reference mesh seen by the batch's cameras, over the batch's background."""
        cams = views.cameras.to(self.device)
        return render_mesh(
            self._vertices,
            self._faces,
            cams.mvp(height, width),
            cams.w2c(),
            (height, width),
            vertex_colors=self._colors,
            uvs=self._uvs,
            texture=self._texture,
            background=None,
        )

    def clean_images(self, views: Views, height: int, width: int) -> Tensor:
        """r(c): [B, H, W, 3] in [0, 1], shaded like the stage's renders, silhouettes antialiased
        (as a photograph's are, and as the polish stage's own renders are)."""
        out = self.render_views(views, height, width)
        return out.antialias(shade(out.rgb, out.face_normal_world, out.alpha, views))

    @torch.no_grad()
    def predict_noise(
        self,
        x_t: Tensor,
        t: Tensor,
        prompt: Prompt,
        views: Views,
        branches: Sequence[Branch] = ("cond", "uncond"),
    ) -> Tensor:
        height, width = x_t.shape[-2:]
        reference = self.encode(self.clean_images(views, height, width))
        alpha, sigma = self.alpha_sigma(t)
        eps = (x_t.float() - alpha.view(-1, 1, 1, 1) * reference) / sigma.view(-1, 1, 1, 1)
        return eps.unsqueeze(0).expand(len(branches), *eps.shape)
