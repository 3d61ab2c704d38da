"""Procedural ground-truth assets for the benchmark, rebuilt deterministically on every run.

Every asset is one closed surface (parts merged by a boolean union with manifold3d, so there are
no hidden inner faces or self-intersections), in scene space: y up, front +z, inside the unit
ball (max radius < 0.9). Colours come per part:

* table  - slab top + 4 legs of width 0.06; face colours (un-welded, one colour per face)
* mug    - cup with a real hollow inside and a torus handle (a through-hole); vertex colours
* cup    - a hollow cup coloured the same inside and out: only shading reveals the cavity
* crate  - a box with a base-colour texture: planks, and an asymmetric symbol on the front only
* duck   - body, head, beak and eyes from unioned ellipsoids; vertex colours per part
* chair  - seat, back and 4 thin legs; face colours

Usage: ``python -m bench.assets [FOLDER]`` (default ``bench/work/assets``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from dreamer.export.mesh_export import save_glb
from dreamer.representations.mesh import TexturedMesh

DEFAULT_FOLDER = Path(__file__).resolve().parent / "work" / "assets"
SEGMENTS = 96  # circular segments: smooth enough for metrics at tau = 0.02


def _box(size: tuple[float, float, float], center: tuple[float, float, float]):
    import manifold3d as mf

    return mf.Manifold.cube(size, center=True).translate(center)


def _ellipsoid(radii: tuple[float, float, float], center: tuple[float, float, float]):
    import manifold3d as mf

    return mf.Manifold.sphere(1.0, SEGMENTS).scale(radii).translate(center)


def _cylinder_y(radius: float, y0: float, y1: float):
    """Cylinder along +y from y0 to y1 (manifold's cylinders run along z)."""
    import manifold3d as mf

    shape = mf.Manifold.cylinder(y1 - y0, radius, radius, SEGMENTS)
    return shape.rotate((-90.0, 0.0, 0.0)).translate((0, y0, 0))


def _torus_xy(major: float, minor: float, center: tuple[float, float, float]):
    """Torus whose ring lies in the xy plane (hole along z), like a mug handle seen from the front."""
    import manifold3d as mf

    section = mf.CrossSection.circle(minor, SEGMENTS // 2).translate((major, 0.0))
    return mf.Manifold.revolve(section, SEGMENTS).translate(center)


def _solid(parts: list[tuple[object, tuple[float, float, float]]], combine: Callable | None = None):
    """Tag each part with its own id, combine (union by default), and return
    (vertices [V, 3], faces [F, 3], face part id [F], colours by id)."""
    colours: dict[int, np.ndarray] = {}
    tagged = []
    for shape, colour in parts:
        shape = shape.as_original()
        colours[shape.original_id()] = np.asarray(colour, dtype=np.float64)
        tagged.append(shape)
    if combine is None:
        result = tagged[0]
        for shape in tagged[1:]:
            result = result + shape
    else:
        result = combine(*tagged)
    mesh = result.to_mesh()
    vertices = np.asarray(mesh.vert_properties, dtype=np.float64)[:, :3]
    faces = np.asarray(mesh.tri_verts, dtype=np.int64)
    part_id = np.full(len(faces), -1, dtype=np.int64)
    run_index = np.asarray(mesh.run_index, dtype=np.int64) // 3
    for r, original in enumerate(np.asarray(mesh.run_original_id)):
        part_id[run_index[r] : run_index[r + 1]] = int(original)
    return vertices, faces, part_id, colours


def _face_coloured(vertices, faces, part_id, colours) -> TexturedMesh:
    """Un-weld: each face's three vertices carry that face's (part's) colour."""
    face_colour = np.stack([colours.get(int(i), np.full(3, 0.7)) for i in part_id])
    return TexturedMesh(
        vertices[faces].reshape(-1, 3),
        np.arange(3 * len(faces)).reshape(-1, 3),
        vertex_colors=np.repeat(face_colour, 3, axis=0),
    )


def _vertex_coloured(vertices, faces, part_id, colour_fn) -> TexturedMesh:
    """Split vertices between parts (so colours are sharp at part borders, smooth within a part),
    colour each vertex with ``colour_fn(points, part)``."""
    out_v, out_f, out_c = [], [], []
    offset = 0
    for part in np.unique(part_id):
        fsel = faces[part_id == part]
        used, local = np.unique(fsel, return_inverse=True)
        pts = vertices[used]
        out_v.append(pts)
        out_f.append(local.reshape(-1, 3) + offset)
        out_c.append(colour_fn(pts, int(part)))
        offset += len(used)
    return TexturedMesh(np.concatenate(out_v), np.concatenate(out_f), vertex_colors=np.concatenate(out_c))


def table() -> TexturedMesh:
    """Slab top (1.2 x 0.06 x 0.8) on four 0.06-wide legs, one colour per part."""
    top = (_box((1.2, 0.06, 0.8), (0.0, 0.30, 0.0)), (0.55, 0.33, 0.16))
    leg_colours = [(0.30, 0.18, 0.08), (0.35, 0.22, 0.10), (0.25, 0.15, 0.07), (0.40, 0.25, 0.12)]
    legs = []
    for k, (x, z) in enumerate([(-0.54, -0.34), (0.54, -0.34), (-0.54, 0.34), (0.54, 0.34)]):
        # legs reach 0.01 into the slab so the union is a clean overlap, not touching faces
        legs.append((_box((0.06, 0.73, 0.06), (x, -0.45 + 0.365, z)), leg_colours[k]))
    return _face_coloured(*_solid([top, *legs]))


def chair() -> TexturedMesh:
    """Seat, backrest at the back (-z, so the chair faces +z) and four thin legs."""
    seat = (_box((0.7, 0.08, 0.7), (0.0, 0.0, 0.0)), (0.70, 0.20, 0.15))
    back = (_box((0.7, 0.58, 0.07), (0.0, 0.31, -0.315)), (0.20, 0.35, 0.65))
    legs = []
    for x, z in [(-0.32, -0.32), (0.32, -0.32), (-0.32, 0.32), (0.32, 0.32)]:
        legs.append((_box((0.06, 0.62, 0.06), (x, -0.30, z)), (0.25, 0.25, 0.25)))
    return _face_coloured(*_solid([seat, back, *legs]))


def mug() -> TexturedMesh:
    """A cup (outer r 0.42, height 0.9) with a real cavity and a torus handle on the +x side."""
    body = _cylinder_y(0.42, -0.45, 0.45)
    handle = _torus_xy(0.22, 0.055, (0.44, 0.0, 0.0))
    cavity = _cylinder_y(0.36, -0.37, 0.6)
    body_colour, handle_colour, inside_colour = (0.15, 0.35, 0.80), (0.90, 0.55, 0.10), (0.95, 0.95, 0.90)
    parts = [(body, body_colour), (handle, handle_colour), (cavity, inside_colour)]
    vertices, faces, part_id, colours = _solid(parts, combine=lambda b, h, c: (b + h) - c)

    def colour(points: np.ndarray, part: int) -> np.ndarray:
        base = colours[part]
        if np.allclose(base, body_colour):
            # a white band around the middle and a vertical gradient: colours vary per vertex
            shade = 0.75 + 0.25 * (points[:, 1:2] + 0.45) / 0.9
            band = (np.abs(points[:, 1:2] - 0.05) < 0.08).astype(np.float64)
            return np.clip(band * 0.95 + (1 - band) * base * shade, 0, 1)
        return np.tile(base, (len(points), 1))

    return _vertex_coloured(vertices, faces, part_id, colour)


def cup() -> TexturedMesh:
    """A plain cup (outer r 0.4, height 0.8, cavity 0.62 deep), one colour inside and out."""
    body = _cylinder_y(0.40, -0.40, 0.40)
    cavity = _cylinder_y(0.34, -0.22, 0.6)
    colour = (0.80, 0.45, 0.30)
    return _face_coloured(*_solid([(body, colour), (cavity, colour)], combine=lambda b, c: b - c))


def duck() -> TexturedMesh:
    """Body, head, beak (pointing +z) and two eyes, each a coloured ellipsoid, unioned."""
    yellow = (1.0, 0.82, 0.10)
    parts = [
        (_ellipsoid((0.42, 0.30, 0.55), (0.0, -0.22, -0.08)), yellow),
        (_ellipsoid((0.24, 0.24, 0.24), (0.0, 0.22, 0.25)), (1.0, 0.90, 0.25)),
        (_ellipsoid((0.10, 0.045, 0.14), (0.0, 0.18, 0.50)), (1.0, 0.45, 0.05)),
        (_ellipsoid((0.04, 0.04, 0.04), (0.12, 0.30, 0.44)), (0.05, 0.05, 0.05)),
        (_ellipsoid((0.04, 0.04, 0.04), (-0.12, 0.30, 0.44)), (0.05, 0.05, 0.05)),
        (_ellipsoid((0.12, 0.08, 0.14), (0.0, -0.06, -0.62)), yellow),  # tail
    ]
    vertices, faces, part_id, colours = _solid(parts)
    return _vertex_coloured(vertices, faces, part_id, lambda p, k: np.tile(colours[k], (len(p), 1)))


def crate_texture(tile: int = 256) -> np.ndarray:
    """4 x 2 tiles (front, back, right, left / top, bottom, unused x 2; power-of-two size):
    planks with a frame; the front tile also has a red up-arrow and a blue dot at its top-right,
    so flips and mirrors show."""
    t, s = np.meshgrid((np.arange(tile) + 0.5) / tile, (np.arange(tile) + 0.5) / tile, indexing="ij")
    rng = np.random.default_rng(7)
    tiles = []
    for k in range(6):
        plank = np.minimum((t * 5).astype(int), 4)
        tone = 0.85 + 0.15 * rng.random(5)[plank]
        grain = 0.04 * np.sin(2 * np.pi * (s * 9 + 3 * t + k))
        img = np.stack([0.72, 0.50, 0.27], -1) * (tone + grain)[..., None]
        gap = (np.abs(t * 5 - np.round(t * 5)) < 0.04)[..., None]
        img = np.where(gap, np.array([0.25, 0.16, 0.08]), img)
        frame = ((s < 0.08) | (s > 0.92) | (t < 0.08) | (t > 0.92))[..., None]
        img = np.where(frame, np.array([0.45, 0.30, 0.15]), img)
        if k == 0:
            shaft = (np.abs(s - 0.5) < 0.07) & (t > 0.45) & (t < 0.85)
            head = (t > 0.2) & (t <= 0.45) & (np.abs(s - 0.5) < (t - 0.2) * 0.9)
            img = np.where((shaft | head)[..., None], np.array([0.85, 0.08, 0.08]), img)
            dot = (s - 0.8) ** 2 + (t - 0.2) ** 2 < 0.07**2
            img = np.where(dot[..., None], np.array([0.10, 0.25, 0.85]), img)
        tiles.append(np.clip(img, 0, 1))
    blank = np.full_like(tiles[0], 0.5)
    rows = [np.concatenate(tiles[0:4], axis=1), np.concatenate([*tiles[4:6], blank, blank], axis=1)]
    return np.concatenate(rows, axis=0).astype(np.float32)


def crate(half: float = 0.45, tile: int = 256) -> TexturedMesh:
    """A 0.9 box, 24 vertices (4 per face) mapped to the tiles of :func:`crate_texture`."""
    h = half
    # (top-left corner, right, down) as seen from outside; down x right = outward normal
    sides = [
        ((-h, h, h), (1, 0, 0), (0, -1, 0)),  # front +z
        ((h, h, -h), (-1, 0, 0), (0, -1, 0)),  # back -z
        ((h, h, h), (0, 0, -1), (0, -1, 0)),  # right +x
        ((-h, h, -h), (0, 0, 1), (0, -1, 0)),  # left -x
        ((-h, h, -h), (1, 0, 0), (0, 0, 1)),  # top +y, front edge at the bottom of the tile
        ((-h, -h, h), (1, 0, 0), (0, 0, -1)),  # bottom -y
    ]
    inset = 1.0 / tile  # keep bilinear taps inside the tile
    vertices, uvs, faces = [], [], []
    for k, (tl, right, down) in enumerate(sides):
        tl, right, down = np.array(tl, float), 2 * h * np.array(right, float), 2 * h * np.array(down, float)
        col, row = k % 4, k // 4
        base = len(vertices)
        for a, b in [(0, 0), (1, 0), (1, 1), (0, 1)]:  # TL, TR, BR, BL
            vertices.append(tl + a * right + b * down)
            su = inset + a * (1 - 2 * inset)
            sv = inset + b * (1 - 2 * inset)
            uvs.append(((col + su) / 4.0, (row + sv) / 2.0))
        faces += [(base, base + 3, base + 2), (base, base + 2, base + 1)]
    return TexturedMesh(np.array(vertices), np.array(faces), uvs=np.array(uvs), texture=crate_texture(tile))


ASSETS: dict[str, Callable[[], TexturedMesh]] = {
    "table": table,
    "mug": mug,
    "cup": cup,
    "crate": crate,
    "duck": duck,
    "chair": chair,
}


def build_assets(folder: str | Path = DEFAULT_FOLDER, names: list[str] | None = None) -> list[Path]:
    """Build the named assets (all by default) and save them as ``<folder>/<name>.glb``."""
    folder = Path(folder)
    paths = []
    for name in names or list(ASSETS):
        mesh = ASSETS[name]()
        paths.append(save_glb(mesh, folder / f"{name}.glb"))
    return paths


if __name__ == "__main__":
    for p in build_assets(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_FOLDER):
        print(p)
