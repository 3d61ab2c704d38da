"""Small meshes made in code for tests (no files needed)."""

from __future__ import annotations

import numpy as np
import trimesh

from dreamer.representations.mesh import TexturedMesh


def coloured_box(extents=(0.8, 0.6, 0.5), seed: int = 0) -> TexturedMesh:
    """A box whose six faces have distinct colours (unwelded, so colours do not blend)."""
    box = trimesh.creation.box(extents=extents)
    tri = box.vertices[box.faces]  # [F, 3, 3]
    normals = box.face_normals
    palette = {
        (1, 0, 0): (0.9, 0.1, 0.1), (-1, 0, 0): (0.1, 0.9, 0.1), (0, 1, 0): (0.1, 0.1, 0.9),
        (0, -1, 0): (0.9, 0.9, 0.1), (0, 0, 1): (0.9, 0.1, 0.9), (0, 0, -1): (0.1, 0.9, 0.9),
    }
    colours = np.array([palette[tuple(np.round(n).astype(int))] for n in normals], np.float32)
    vertices = tri.reshape(-1, 3)
    faces = np.arange(len(vertices)).reshape(-1, 3)
    return TexturedMesh(vertices, faces, vertex_colors=np.repeat(colours, 3, axis=0))


def save_glb(mesh: TexturedMesh, path) -> None:
    colours = (np.concatenate([mesh.vertex_colors, np.ones((len(mesh.vertices), 1))], 1) * 255).astype(np.uint8)
    trimesh.Trimesh(mesh.vertices, mesh.faces, vertex_colors=colours, process=False).export(path)
