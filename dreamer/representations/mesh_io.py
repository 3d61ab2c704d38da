"""Load GLB/GLTF, OBJ (+MTL + texture) and PLY files into a ``TexturedMesh`` through trimesh.

Why the per-node walk instead of ``scene.to_geometry()``: we need each geometry's own visual
(texture, face or vertex colours) and its node transform; walking ``scene.graph.nodes_geometry``
gives both, and mirrored transforms get their winding flipped so faces stay counter-clockwise.

Colour handling:
* textures (glTF baseColorTexture or an OBJ/MTL map_Kd) are kept with their uvs, converted to
  glTF's convention (v = 0 at the top); a non-white baseColorFactor/Kd is multiplied in (for glTF
  in linear space, as the spec says);
* face colours are un-welded, so each face's three vertices carry that face's colour;
* materials without an image (baseColorFactor or Kd only) become uniform vertex colours;
* glTF COLOR_0 and baseColorFactor are linear by the spec, so they are converted to sRGB.

Several geometries are concatenated. If every part is textured (uvs inside [0, 1]) the distinct
images are atlased side by side; if textured and untextured parts mix, the textured parts are
converted to vertex colours sampled bilinearly from their image at the vertex uvs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dreamer.errors import DreamerError
from dreamer.export.mesh_export import linear_to_srgb, srgb_to_linear
from dreamer.representations.mesh import TexturedMesh

SUPPORTED_SUFFIXES = (".glb", ".gltf", ".obj", ".ply")
DEFAULT_GREY = 0.7  # colour for parts with no colour at all, when other parts have one
_ATLAS_PAD = 2  # texels of edge-replicated border around each atlased image


def sample_texture(texture: np.ndarray, uvs: np.ndarray) -> np.ndarray:
    """Bilinear lookup of ``texture`` [H, W, C] at glTF uvs [N, 2] (v = 0 top, texel centres at
    (i + 0.5) / size, clamped at the border). Returns [N, C] float32."""
    h, w = texture.shape[:2]
    x = np.clip(np.asarray(uvs[:, 0], np.float64) * w - 0.5, 0.0, w - 1.0)
    y = np.clip(np.asarray(uvs[:, 1], np.float64) * h - 0.5, 0.0, h - 1.0)
    x0 = np.floor(x).astype(np.int64)
    y0 = np.floor(y).astype(np.int64)
    x1 = np.minimum(x0 + 1, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    fx = (x - x0)[:, None]
    fy = (y - y0)[:, None]
    t = texture
    top = t[y0, x0] * (1 - fx) + t[y0, x1] * fx
    bottom = t[y1, x0] * (1 - fx) + t[y1, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def _image_to_array(image) -> np.ndarray:
    """PIL image (any mode) -> float32 [H, W, 3] in [0, 1]."""
    arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return np.ascontiguousarray(arr)


def _rgb_factor(values, default: float = 1.0) -> np.ndarray:
    """trimesh stores colour factors as uint8 RGBA or floats; return float RGB in [0, 1]."""
    if values is None:
        return np.full(3, default, dtype=np.float64)
    arr = np.asarray(values, dtype=np.float64).reshape(-1)[:3]
    if np.asarray(values).dtype.kind in "ui" or arr.max(initial=0.0) > 1.0:
        arr = arr / 255.0
    return np.clip(arr, 0.0, 1.0)


def _material_colour(material, is_gltf: bool) -> tuple[object | None, np.ndarray, bool]:
    """(image or None, RGB factor, factor is linear) for a trimesh material of either kind."""
    if material is None:
        return None, np.ones(3), False
    if hasattr(material, "baseColorTexture") or hasattr(material, "baseColorFactor"):  # PBRMaterial
        image = getattr(material, "baseColorTexture", None)
        return image, _rgb_factor(getattr(material, "baseColorFactor", None)), is_gltf
    image = getattr(material, "image", None)  # SimpleMaterial (OBJ/MTL)
    if image is not None:
        # Kd next to map_Kd is ignored, as Blender's importer does: trimesh and others write a
        # default grey Kd with textures, and multiplying it in would darken them.
        return image, np.ones(3), False
    return None, _rgb_factor(getattr(material, "diffuse", None)), False


def _apply_factor(texture: np.ndarray, factor: np.ndarray, linear: bool) -> np.ndarray:
    if np.allclose(factor, 1.0):
        return texture
    if linear:
        return linear_to_srgb(srgb_to_linear(texture) * factor).astype(np.float32)
    return (texture * factor).astype(np.float32)


def _part_from_geometry(geom, is_gltf: bool) -> dict | None:
    """One trimesh geometry -> dict(vertices, faces, colors|None, uvs|None, texture|None)."""
    import trimesh

    if not isinstance(geom, trimesh.Trimesh) or len(geom.faces) == 0:
        return None
    vertices = np.asarray(geom.vertices, dtype=np.float64)
    faces = np.asarray(geom.faces, dtype=np.int64)
    part = {"vertices": vertices, "faces": faces, "colors": None, "uvs": None, "texture": None}
    visual = geom.visual
    kind = getattr(visual, "kind", None)
    if isinstance(visual, trimesh.visual.texture.TextureVisuals):
        image, factor, linear = _material_colour(getattr(visual, "material", None), is_gltf)
        uv = getattr(visual, "uv", None)
        if image is not None and uv is not None and len(uv) == len(vertices):
            uv = np.asarray(uv, dtype=np.float64)
            part["uvs"] = np.stack([uv[:, 0], 1.0 - uv[:, 1]], axis=1)
            part["texture"] = _apply_factor(_image_to_array(image), factor, linear)
        else:
            # glTF COLOR_0 next to a material lands in vertex_attributes["color"] (raw accessor values)
            raw = getattr(visual, "vertex_attributes", {}).get("color")
            if raw is not None and len(raw) == len(vertices):
                raw = np.asarray(raw)
                colors = raw[:, :3].astype(np.float64) / (255.0 if raw.dtype.kind in "ui" else 1.0)
                if is_gltf:  # COLOR_0 and baseColorFactor are both linear: multiply, then to sRGB
                    part["colors"] = linear_to_srgb(colors * factor)
                else:
                    part["colors"] = np.clip(colors * factor, 0.0, 1.0)
            else:
                colour = linear_to_srgb(factor) if linear else factor
                part["colors"] = np.tile(colour, (len(vertices), 1))
    elif kind == "vertex":
        colors = np.asarray(visual.vertex_colors, dtype=np.float64)[:, :3] / 255.0
        part["colors"] = linear_to_srgb(colors) if is_gltf else colors
    elif kind == "face":
        colors = np.asarray(visual.face_colors, dtype=np.float64)[:, :3] / 255.0
        part["vertices"] = vertices[faces].reshape(-1, 3)
        part["faces"] = np.arange(3 * len(faces), dtype=np.int64).reshape(-1, 3)
        part["colors"] = np.repeat(colors, 3, axis=0)
    return part


def _transform(part: dict, matrix: np.ndarray) -> dict:
    out = dict(part)
    v = part["vertices"]
    out["vertices"] = v @ matrix[:3, :3].T + matrix[:3, 3]
    if np.linalg.det(matrix[:3, :3]) < 0:  # a mirror flips the winding; flip it back
        out["faces"] = part["faces"][:, ::-1].copy()
    return out


def _merge(parts: list[dict]) -> TexturedMesh:
    textured = [p["texture"] is not None for p in parts]
    coloured = [p["colors"] is not None for p in parts]
    uv_inside = all(
        p["uvs"] is None or (p["uvs"].min() >= -1e-6 and p["uvs"].max() <= 1 + 1e-6) for p in parts
    )
    if not all(textured) or not uv_inside:
        # Fall back to vertex colours (sampled from textures where there are any).
        for p in parts:
            if p["texture"] is not None:
                uv = np.mod(p["uvs"], 1.0) if not uv_inside else p["uvs"]
                p["colors"] = sample_texture(p["texture"], uv)
                p["texture"] = p["uvs"] = None
        if not any(textured) and not any(coloured):
            colors = None
        else:
            for p in parts:
                if p["colors"] is None:
                    p["colors"] = np.full((len(p["vertices"]), 3), DEFAULT_GREY)
            colors = np.concatenate([p["colors"] for p in parts])
        uvs = texture = None
    else:
        # Atlas the distinct images side by side (same texture object = same tile).
        tiles: list[np.ndarray] = []
        tile_of: list[int] = []
        for p in parts:
            for i, t in enumerate(tiles):
                if t is p["texture"] or (t.shape == p["texture"].shape and np.array_equal(t, p["texture"])):
                    tile_of.append(i)
                    break
            else:
                tiles.append(p["texture"])
                tile_of.append(len(tiles) - 1)
        if len(tiles) == 1:
            texture = tiles[0]
            uvs = np.concatenate([p["uvs"] for p in parts])
        else:
            # each tile gets an edge-replicated border so bilinear lookups never mix tiles
            pad = _ATLAS_PAD
            padded = [np.pad(t, ((pad, pad), (pad, pad), (0, 0)), mode="edge") for t in tiles]
            height = max(t.shape[0] for t in padded)
            width = sum(t.shape[1] for t in padded)
            texture = np.zeros((height, width, 3), dtype=np.float32)
            x0s = np.cumsum([0] + [t.shape[1] for t in padded])
            for t, x0 in zip(padded, x0s):
                texture[: t.shape[0], x0 : x0 + t.shape[1]] = t
            uv_parts = []
            for p, i in zip(parts, tile_of):
                h, w = tiles[i].shape[:2]
                uv = np.asarray(p["uvs"], dtype=np.float64)
                u = (x0s[i] + pad + uv[:, 0] * w) / width
                v = (pad + uv[:, 1] * h) / height
                uv_parts.append(np.stack([u, v], axis=1))
            uvs = np.concatenate(uv_parts)
        colors = None
    offsets = np.cumsum([0] + [len(p["vertices"]) for p in parts])
    vertices = np.concatenate([p["vertices"] for p in parts])
    faces = np.concatenate([p["faces"] + o for p, o in zip(parts, offsets)])
    return TexturedMesh(vertices, faces, vertex_colors=colors, uvs=uvs, texture=texture)


def load_mesh(path: str | os.PathLike) -> TexturedMesh:
    """Read a mesh file into scene space (node transforms applied, nothing re-centred or scaled).

    Raises DreamerError for a missing, unreadable or unsupported file, or one without triangles.
    """
    path = Path(path)
    if not path.is_file():
        raise DreamerError(f"mesh file not found: {path} (check the path)")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DreamerError(
            f"unsupported mesh format '{suffix or path.name}': {path}; convert it to GLB, OBJ or PLY"
        )
    import trimesh

    try:
        scene = trimesh.load(str(path), force="scene", process=False, maintain_order=True)
    except Exception as e:  # trimesh raises many kinds for broken files
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        raise DreamerError(
            f"could not read mesh file {path} ({reason}); re-export it as GLB, OBJ or PLY"
        ) from None
    is_gltf = suffix in (".glb", ".gltf")
    parts = []
    for node in scene.graph.nodes_geometry:
        matrix, geom_name = scene.graph[node]
        part = _part_from_geometry(scene.geometry.get(geom_name), is_gltf)
        if part is not None:
            parts.append(_transform(part, np.asarray(matrix, dtype=np.float64)))
    if not parts:
        raise DreamerError(f"mesh file has no triangles: {path}; export a triangle or polygon mesh")
    return _merge(parts)
