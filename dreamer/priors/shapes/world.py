"""The shapes world: six canonical primitives in eight colours, 48 prompts.

Every primitive is centred on its bounding box at the origin, y up, sized as the issue fixes
them (checks outside this code rebuild the same set). Colours are sRGB values used directly as
render albedo in [0, 1].
"""

from __future__ import annotations

import functools

import numpy as np
import trimesh

from dreamer.representations.mesh import TexturedMesh

SHAPES: tuple[str, ...] = ("sphere", "cube", "cylinder", "cone", "torus", "pyramid")

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 210, 40),
    "orange": (245, 130, 30),
    "purple": (140, 60, 190),
    "white": (240, 240, 240),
    "black": (30, 30, 30),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)

#: rotation taking trimesh's z axis to y (x stays, so the result is right-handed)
_Z_TO_Y = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]], dtype=np.float64)


def prompt_text(colour: str, shape: str) -> str:
    return f"a {colour} {shape}"


def all_prompts() -> list[tuple[str, str]]:
    """(colour, shape) for the 48 prompts, shapes outer."""
    return [(colour, shape) for shape in SHAPES for colour in COLOUR_NAMES]


def parse_prompt(text: str) -> tuple[str, str] | None:
    """(colour, shape) if ``text`` is one of the 48 prompts (view suffixes allowed), else None."""
    words = text.lower().split(",")[0].split()
    if len(words) == 3 and words[0] == "a" and words[1] in COLOURS and words[2] in SHAPES:
        return words[1], words[2]
    return None


def colour_rgb(colour: str) -> np.ndarray:
    return np.asarray(COLOURS[colour], np.float32) / 255.0


def _pyramid() -> trimesh.Trimesh:
    h, b = 0.55, 0.45
    vertices = [[-b, -h / 2, -b], [b, -h / 2, -b], [b, -h / 2, b], [-b, -h / 2, b], [0.0, h / 2, 0.0]]
    faces = [[0, 1, 2], [0, 2, 3], [0, 4, 1], [1, 4, 2], [2, 4, 3], [3, 4, 0]]
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    mesh.fix_normals()
    return mesh


@functools.cache
def _canonical(shape: str) -> trimesh.Trimesh:
    if shape == "sphere":
        mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    elif shape == "cube":
        mesh = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    elif shape == "cylinder":
        mesh = trimesh.creation.cylinder(radius=0.3, height=1.0, sections=48).apply_transform(_Z_TO_Y)
    elif shape == "cone":
        mesh = trimesh.creation.cone(radius=0.45, height=0.9, sections=48).apply_transform(_Z_TO_Y)
    elif shape == "torus":
        mesh = trimesh.creation.torus(0.45, 0.15, major_sections=48, minor_sections=16).apply_transform(_Z_TO_Y)
    elif shape == "pyramid":
        mesh = _pyramid()
    else:
        raise ValueError(f"unknown shape {shape!r}; one of {', '.join(SHAPES)}")
    lo, hi = mesh.bounds
    return mesh.apply_translation(-(lo + hi) / 2)


def canonical_mesh(shape: str, colour: str | None = None) -> TexturedMesh:
    """The canonical primitive as a TexturedMesh (vertex colours when ``colour`` is given)."""
    mesh = _canonical(shape)
    vertices = np.asarray(mesh.vertices, np.float32)
    colours = None if colour is None else np.tile(colour_rgb(colour), (len(vertices), 1))
    return TexturedMesh(vertices=vertices, faces=np.asarray(mesh.faces, np.int64), vertex_colors=colours)
