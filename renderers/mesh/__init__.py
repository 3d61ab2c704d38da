"""Differentiable mesh rendering as small nvdiffrast-style ops, with a PyTorch and a CUDA backend.

Plain tensors in, plain tensors out; this package never imports ``dreamer``.

Low-level ops (nvdiffrast's semantics and row order: image row 0 is clip y = -1, the BOTTOM):

* :func:`rasterize` -> rast ``[C, H, W, 4]`` float = (u, v, z/w, triangle_id + 1), 0 = empty.
  u weights the triangle's vertex 0, v its vertex 1 and 1 - u - v its vertex 2.
* :func:`interpolate` -> ``[C, H, W, A]`` attributes blended with rast's (u, v).
* :func:`texture` -> ``[C, H, W, Ch]`` bilinear/nearest lookups; uv (0, 0) is the corner of the
  texel stored first in memory, u along a row, v down the rows.
* :func:`antialias` -> colours blended across silhouette edges, the only op whose gradients move
  silhouettes (without it, visibility has no gradient in either backend).

High-level helpers (images with row 0 = TOP, as image files and the rest of the project expect):

* :func:`render_mesh` -> :class:`MeshRender` (albedo, alpha, depth, normals, positions, ids, uv).
* :func:`rasterize_uv` -> per-texel triangle id and barycentrics, for texture baking.

Backends: ``"torch"`` (any device, pure PyTorch), ``"nvdiffrast"`` (CUDA, RasterizeCudaContext),
``"auto"`` = nvdiffrast for CUDA tensors when it is installed, torch otherwise. The torch backend's visibility is not
differentiable; :func:`antialias` adds the silhouette terms, as in nvdiffrast.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from . import torch_backend

Backend = Literal["auto", "torch", "nvdiffrast"]

__all__ = [
    "Backend",
    "MeshRender",
    "antialias",
    "interpolate",
    "rasterize",
    "rasterize_uv",
    "render_mesh",
    "texture",
    "vertex_normals",
]


@functools.cache
def _nvdiffrast_installed() -> bool:
    return importlib.util.find_spec("nvdiffrast") is not None


def _resolve(backend: str, *tensors: Tensor) -> str:
    if backend == "auto":  # CUDA without nvdiffrast still renders (slower): no CUDA build pain
        return "nvdiffrast" if any(t.is_cuda for t in tensors) and _nvdiffrast_installed() else "torch"
    if backend not in ("torch", "nvdiffrast"):
        raise ValueError(f"unknown mesh backend {backend!r}; use 'auto', 'torch' or 'nvdiffrast'")
    return backend


def rasterize(pos_clip: Tensor, tri: Tensor, resolution: tuple[int, int], backend: Backend = "auto") -> Tensor:
    """Rasterise clip-space triangles into nvdiffrast's rast buffer.

    Args:
        pos_clip: [C, V, 4] or [V, 4] float clip-space positions (OpenGL: x, y, z, w).
        tri: [F, 3] integer vertex indices, shared by all C images.
        resolution: (H, W).
    Returns:
        [C, H, W, 4] float: (u, v, z/w, triangle_id + 1); zeros where no triangle covers the pixel
        centre. Row 0 is the bottom of the image (clip y = -1). (u, v) carry gradients to
        ``pos_clip`` (interior terms, like nvdiffrast's rasterize backward); z/w and the id do not.
    """
    if pos_clip.dim() == 2:
        pos_clip = pos_clip.unsqueeze(0)
    H, W = int(resolution[0]), int(resolution[1])
    if _resolve(backend, pos_clip) == "nvdiffrast":
        from . import nvdiffrast_backend

        return nvdiffrast_backend.rasterize(pos_clip, tri, (H, W))
    return torch_backend.rasterize(pos_clip, tri, (H, W))


def interpolate(attr: Tensor, rast: Tensor, tri: Tensor, backend: Backend = "auto") -> Tensor:
    """Blend per-vertex attributes with rast's barycentrics.

    Args:
        attr: [V, A] (shared) or [C, V, A] (per image) float.
        rast: [C, H, W, 4] from :func:`rasterize`.
        tri: [F, 3] the same triangles.
    Returns:
        [C, H, W, A], 0 where empty; differentiable wrt ``attr`` and rast's (u, v).
    """
    if _resolve(backend, attr, rast) == "nvdiffrast":
        from . import nvdiffrast_backend

        return nvdiffrast_backend.interpolate(attr, rast, tri)
    return torch_backend.interpolate(attr, rast, tri)


def texture(
    tex: Tensor,
    uv: Tensor,
    filter_mode: Literal["linear", "nearest"] = "linear",
    boundary_mode: Literal["clamp", "wrap", "zero"] = "clamp",
    backend: Backend = "auto",
) -> Tensor:
    """Sample a texture at nvdiffrast-convention uv.

    Args:
        tex: [1 or C, Ht, Wt, Ch] float; texel (row i, col j) is centred at uv ((j+.5)/Wt, (i+.5)/Ht).
        uv: [C, H, W, 2] float.
    Returns:
        [C, H, W, Ch], differentiable wrt ``tex`` and ``uv`` (no mipmapping).
    """
    if _resolve(backend, tex, uv) == "nvdiffrast":
        from . import nvdiffrast_backend

        return nvdiffrast_backend.texture(tex, uv, filter_mode, boundary_mode)
    return torch_backend.texture(tex, uv, filter_mode, boundary_mode)


def antialias(color: Tensor, rast: Tensor, pos_clip: Tensor, tri: Tensor, backend: Backend = "auto") -> Tensor:
    """Antialias silhouettes of a rendered image, with gradients to the clip-space positions.

    Args:
        color: [C, H, W, Ch] in rast's row order (row 0 = bottom); rast: from :func:`rasterize`
            with the same ``pos_clip`` [C, V, 4] and ``tri`` [F, 3].
    Returns:
        [C, H, W, Ch]. Pixels next to a silhouette take a share of their neighbour's colour equal
        to the analytic coverage of the edge between their centres.
    """
    if pos_clip.dim() == 2:
        pos_clip = pos_clip.unsqueeze(0)
    if _resolve(backend, color, rast) == "nvdiffrast":
        from . import nvdiffrast_backend

        return nvdiffrast_backend.antialias(color, rast, pos_clip, tri)
    return torch_backend.antialias(color, rast, pos_clip, tri)


_sample_texture = texture  # render_mesh's ``texture`` argument shadows the op


def vertex_normals(vertices: Tensor, faces: Tensor) -> tuple[Tensor, Tensor]:
    """(vertex normals [V, 3], face normals [F, 3]), unit length; vertex ones area-weighted."""
    f = faces.long()
    v0, v1, v2 = vertices[f[:, 0]], vertices[f[:, 1]], vertices[f[:, 2]]
    fn = torch.linalg.cross(v1 - v0, v2 - v0)  # length = 2 * area
    vn = torch.zeros_like(vertices).index_add(0, f.reshape(-1), fn.repeat_interleave(3, 0))
    return _normalize(vn), _normalize(fn)


def _normalize(x: Tensor, eps: float = 1e-12) -> Tensor:
    return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(eps)


@dataclass
class MeshRender:
    """Per-pixel render outputs, images with row 0 at the TOP.

    Attributes:
        rgb: [C, H, W, 3] albedo composited over the background.
        alpha: [C, H, W, 1] coverage, 0 or 1 (no antialiasing).
        depth: [C, H, W, 1] distance along the camera's viewing axis (-z_cam), 0 where empty.
        normal_world: [C, H, W, 3] interpolated area-weighted vertex normals, unit, 0 where empty.
        normal_cam: [C, H, W, 3] the same in the OpenGL camera frame (facing the camera = +z).
        face_normal_world: [C, H, W, 3] the flat normal of the visible face, 0 where empty.
        position_world: [C, H, W, 3] surface point, 0 where empty.
        triangle_id: [C, H, W] int64 face index, -1 where empty.
        uv: [C, H, W, 2] interpolated glTF uvs, or None without ``uvs``.
        rast, pos_clip, faces: what :meth:`antialias` needs (rast in nvdiffrast's row order).
    """

    rgb: Tensor
    alpha: Tensor
    depth: Tensor
    normal_world: Tensor
    normal_cam: Tensor
    face_normal_world: Tensor
    position_world: Tensor
    triangle_id: Tensor
    uv: Tensor | None = None
    rast: Tensor | None = None
    pos_clip: Tensor | None = None
    faces: Tensor | None = None
    backend: Backend = "auto"

    def antialias(self, image: Tensor) -> Tensor:
        """Antialias an image [C, H, W, Ch] (row 0 = top) composed from this render's buffers.

        Shade and composite first, then call this: silhouette pixels blend object and background,
        and the blend's gradient moves the silhouette (the composite must differ from the
        background there, or there is nothing to pull on).
        """
        out = antialias(image.flip(1), self.rast, self.pos_clip, self.faces, backend=self.backend)
        return out.flip(1)


def render_mesh(
    vertices: Tensor,
    faces: Tensor,
    mvp: Tensor,
    w2c: Tensor,
    resolution: tuple[int, int],
    *,
    vertex_colors: Tensor | None = None,
    uvs: Tensor | None = None,
    texture: Tensor | None = None,
    background: Tensor | None = None,
    backend: Backend = "auto",
) -> MeshRender:
    """Render a mesh from C cameras: the G-buffer the reference prior and the polish stage use.

    Args:
        vertices: [V, 3] world positions; faces: [F, 3] int.
        mvp: [C, 4, 4] world -> clip (OpenGL); w2c: [C, 4, 4] world -> camera (OpenGL frame).
        resolution: (H, W).
        vertex_colors: [V, 3] albedo, or
        uvs: [V, 2] glTF uvs (v = 0 at the TOP row of the image) with texture: [Ht, Wt, 3], stored
            as an image (row 0 = top). Those two conventions meet nvdiffrast's (uv (0, 0) = first
            texel in memory) without any flip, so uvs go to :func:`texture` unchanged.
            Texture wins over vertex colours; with neither the albedo is white.
        background: [C, 3] or None (black).
    Returns:
        :class:`MeshRender`. Differentiable wrt vertices, colours and texture (the torch backend:
        not through visibility). Back faces are drawn, their normals are not flipped.
    """
    H, W = int(resolution[0]), int(resolution[1])
    C = mvp.shape[0]
    faces = faces.long()
    V = vertices.shape[0]
    vh = torch.cat([vertices, torch.ones_like(vertices[:, :1])], -1)  # [V, 4]
    pos_clip = torch.einsum("cij,vj->cvi", mvp.to(vertices), vh)
    rast = rasterize(pos_clip, faces, (H, W), backend=backend)
    tid = rast[..., 3].detach().round().long() - 1  # [C, H, W]
    mask = (tid >= 0).unsqueeze(-1)
    alpha = mask.to(vertices.dtype)

    vn, fn = vertex_normals(vertices, faces)
    cam_z = torch.einsum("cj,vj->cv", w2c[:, 2].to(vertices), vh)  # [C, V]
    parts = [vertices, vn]
    if texture is None and vertex_colors is not None:
        parts.append(vertex_colors.to(vertices))
    if uvs is not None:
        parts.append(uvs.to(vertices))
    shared = torch.cat(parts, -1).unsqueeze(0).expand(C, V, -1)
    attr = torch.cat([shared, -cam_z.unsqueeze(-1)], -1).contiguous()
    out = interpolate(attr, rast, faces, backend=backend)

    position = out[..., 0:3]
    normal_world = _normalize(out[..., 3:6]) * alpha
    k = 6
    if texture is None and vertex_colors is not None:
        albedo = out[..., k : k + 3]
        k += 3
    else:
        albedo = torch.ones_like(position)
    uv = None
    if uvs is not None:
        uv = out[..., k : k + 2]
        k += 2
        if texture is not None:
            albedo = _sample_texture(texture.unsqueeze(0).to(vertices), uv.contiguous(), backend=backend)
    depth = out[..., k : k + 1]
    bg = torch.zeros(C, 3, dtype=vertices.dtype, device=vertices.device) if background is None else background
    rgb = albedo * alpha + bg.to(vertices).view(C, 1, 1, 3) * (1 - alpha)
    rot = w2c[:, :3, :3].to(vertices)
    normal_cam = torch.einsum("cij,chwj->chwi", rot, normal_world)
    face_normal = fn[tid.clamp_min(0)] * alpha

    def top(x: Tensor) -> Tensor:
        return x.flip(1)

    return MeshRender(
        rgb=top(rgb),
        alpha=top(alpha),
        depth=top(depth),
        normal_world=top(normal_world),
        normal_cam=top(normal_cam),
        face_normal_world=top(face_normal),
        position_world=top(position),
        triangle_id=top(tid),
        uv=None if uv is None else top(uv),
        rast=rast,
        pos_clip=pos_clip,
        faces=faces,
        backend=backend,
    )


def rasterize_uv(
    uvs: Tensor, faces: Tensor, resolution: tuple[int, int], conservative: bool = True
) -> tuple[Tensor, Tensor]:
    """Rasterise a mesh in texture space for baking: which face, and where on it, each texel sees.

    Texel (row r, col c) has its centre at glTF uv ((c + 0.5) / Wt, (r + 0.5) / Ht), v = 0 being
    the top row. Texels whose centre lies in a UV triangle get its exact barycentrics. With
    ``conservative``, texels whose centre is within ~0.71 texel (half the diagonal) of a triangle
    but inside none are filled too, with barycentrics clamped onto the triangle, so thin charts
    and chart borders get samples; seams beyond that still need padding by the caller.

    Args:
        uvs: [V, 2] float glTF uvs; faces: [F, 3] int.
    Returns:
        (triangle_id [Ht, Wt] int64, -1 empty; bary [Ht, Wt, 3] weights of the face's vertices
        0, 1, 2, summing to 1, zeros where empty). Always computed with the torch backend.
    """
    Ht, Wt = int(resolution[0]), int(resolution[1])
    uvs = uvs.detach()
    dt = torch.float64 if uvs.dtype == torch.float64 else torch.float32
    # Clip y = 2v - 1 puts v = (r + 0.5) / Ht on rast row r: rows already run top-down in glTF terms.
    pos = torch.cat(
        [uvs.to(dt) * 2 - 1, torch.zeros_like(uvs[:, :1], dtype=dt), torch.ones_like(uvs[:, :1], dtype=dt)],
        -1,
    )
    tri = faces.long()
    tid = torch_backend.visible_triangles(pos, tri, (Ht, Wt))
    if conservative:
        extra = torch_backend.visible_triangles(pos, tri, (Ht, Wt), expand=0.5**0.5)
        tid = torch.where(tid >= 0, tid, extra)
    tid = tid[0]
    r, c = (tid >= 0).nonzero(as_tuple=True)
    f = tid[r, c]
    u, v, _ = torch_backend.barycentrics_at(pos.unsqueeze(0), tri, torch.zeros_like(r), f, c, r, (Ht, Wt))
    b = torch.stack([u, v, 1 - u - v], -1).clamp_min(0)
    b = b / b.sum(-1, keepdim=True).clamp_min(1e-12)
    bary = torch.zeros(Ht, Wt, 3, dtype=dt, device=uvs.device)
    bary[r, c] = b
    return tid, bary
