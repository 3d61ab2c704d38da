"""A triangle mesh with either per-vertex colours or a UV-mapped base-colour texture.

One index buffer for everything: vertices are split where UVs or face colours differ (the way
glTF stores meshes), so positions, colours and UVs share ``faces``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass
class TexturedMesh:
    """Attributes (numpy, scene space and units):
        vertices: [V, 3] float32.
        faces: [F, 3] int64, counter-clockwise seen from outside.
        vertex_colors: [V, 3] float32 in [0, 1] (linear in nothing: plain sRGB values), or None.
        uvs: [V, 2] float32, glTF convention (v = 0 at the top row of the texture image), or None.
        texture: [Ht, Wt, 3] float32 sRGB in [0, 1], or None.
    """

    vertices: np.ndarray
    faces: np.ndarray
    vertex_colors: np.ndarray | None = None
    uvs: np.ndarray | None = None
    texture: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.vertices = np.ascontiguousarray(self.vertices, dtype=np.float32).reshape(-1, 3)
        self.faces = np.ascontiguousarray(self.faces, dtype=np.int64).reshape(-1, 3)
        if self.vertex_colors is not None:
            self.vertex_colors = np.ascontiguousarray(self.vertex_colors, dtype=np.float32).reshape(-1, 3)
        if self.uvs is not None:
            self.uvs = np.ascontiguousarray(self.uvs, dtype=np.float32).reshape(-1, 2)
        if self.texture is not None:
            self.texture = np.ascontiguousarray(self.texture, dtype=np.float32)
        if (self.uvs is None) != (self.texture is None):
            raise ValueError("TexturedMesh: uvs and texture come together")
        if len(self.faces) and (self.faces.min() < 0 or self.faces.max() >= len(self.vertices)):
            raise ValueError("TexturedMesh: face index out of range")

    @property
    def has_texture(self) -> bool:
        return self.texture is not None

    def copy(self, **changes) -> TexturedMesh:
        return replace(self, **changes)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.vertices.min(0), self.vertices.max(0)

    def face_normals(self) -> np.ndarray:
        v = self.vertices[self.faces]
        n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
        return n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)

    def face_areas(self) -> np.ndarray:
        v = self.vertices[self.faces]
        return 0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=-1)
