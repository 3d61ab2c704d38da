"""Save a ``TexturedMesh`` as GLB (the main output) or as an OBJ + MTL + PNG set.

Files are in scene space and units (y up, front +z); nothing is re-centred or re-scaled.
The GLB is written by hand (a few buffers and one PBR material) so the bytes are fully ours:
positions, indices and uvs go in as float32/uint32 unchanged, the texture as an embedded PNG.
Vertex colours go into ``COLOR_0`` converted to linear, as glTF requires (viewers and Blender
treat COLOR_0 as linear); ``load_mesh`` converts them back to sRGB.
"""

from __future__ import annotations

import io
import json
import os
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from dreamer.errors import DreamerError
from dreamer.export.files import atomic_write_bytes
from dreamer.representations.mesh import TexturedMesh

_GLB_MAGIC = 0x46546C67  # "glTF"
_CHUNK_JSON = 0x4E4F534A
_CHUNK_BIN = 0x004E4942
_FLOAT, _UINT32 = 5126, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """sRGB transfer function inverse (IEC 61966-2-1), for glTF's linear COLOR_0 and factors."""
    c = np.clip(np.asarray(c, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    """sRGB transfer function, the inverse of :func:`srgb_to_linear`."""
    c = np.clip(np.asarray(c, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * np.power(c, 1.0 / 2.4) - 0.055)


def texture_to_png(texture: np.ndarray) -> bytes:
    """Encode a float [H, W, 3] sRGB texture as 8-bit PNG bytes (rounded, so error <= 1/510)."""
    img = np.clip(np.round(np.asarray(texture, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img[..., :3], mode="RGB").save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def smooth_vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted normals shared by vertices at the same position (so UV seams do not show)."""
    _, inverse = np.unique(vertices, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    tri = vertices[faces].astype(np.float64)
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # length = 2 * area
    acc = np.zeros((inverse.max() + 1, 3))
    for k in range(3):
        np.add.at(acc, inverse[faces[:, k]], fn)
    n = acc[inverse]
    length = np.linalg.norm(n, axis=1, keepdims=True)
    n = np.where(length > 1e-20, n / np.maximum(length, 1e-20), np.array([0.0, 1.0, 0.0]))
    return n.astype(np.float32)


def _check_mesh(mesh: TexturedMesh) -> None:
    if len(mesh.faces) == 0 or len(mesh.vertices) == 0:
        raise DreamerError("cannot export an empty mesh (no triangles); check the reconstruction step")
    if not np.isfinite(mesh.vertices).all():
        raise DreamerError("cannot export a mesh with NaN/inf vertex positions; the optimisation diverged")


def glb_bytes(mesh: TexturedMesh, smooth_normals: bool = False, name: str = "dreamer") -> bytes:
    """Build the GLB: one node, one mesh, one triangle primitive, one metallic-roughness material.

    Textured meshes get TEXCOORD_0 and an embedded PNG baseColorTexture; vertex-coloured meshes
    get COLOR_0 (linear float). ``smooth_normals`` adds NORMAL; without it viewers shade flat.
    """
    _check_mesh(mesh)
    chunks: list[bytes] = []
    views: list[dict] = []
    accessors: list[dict] = []
    offset = 0

    def add_view(data: bytes, target: int | None) -> int:
        nonlocal offset
        view = {"buffer": 0, "byteOffset": offset, "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        views.append(view)
        pad = (-len(data)) % 4
        chunks.append(data + b"\x00" * pad)
        offset += len(data) + pad
        return len(views) - 1

    def add_accessor(arr: np.ndarray, kind: str, target: int, minmax: bool = False) -> int:
        comp = _UINT32 if arr.dtype == np.uint32 else _FLOAT
        acc = {
            "bufferView": add_view(np.ascontiguousarray(arr).tobytes(), target),
            "componentType": comp,
            "count": int(arr.shape[0]),
            "type": kind,
        }
        if minmax:
            acc["min"] = [float(x) for x in arr.min(0)]
            acc["max"] = [float(x) for x in arr.max(0)]
        accessors.append(acc)
        return len(accessors) - 1

    attributes = {
        "POSITION": add_accessor(mesh.vertices.astype("<f4"), "VEC3", _ARRAY_BUFFER, minmax=True)
    }
    if smooth_normals:
        attributes["NORMAL"] = add_accessor(
            smooth_vertex_normals(mesh.vertices, mesh.faces).astype("<f4"), "VEC3", _ARRAY_BUFFER
        )
    pbr: dict = {"baseColorFactor": [1.0, 1.0, 1.0, 1.0], "metallicFactor": 0.0, "roughnessFactor": 0.9}
    gltf: dict = {"asset": {"version": "2.0", "generator": "dreamer"}}
    if mesh.has_texture:
        attributes["TEXCOORD_0"] = add_accessor(mesh.uvs.astype("<f4"), "VEC2", _ARRAY_BUFFER)
        image_view = add_view(texture_to_png(mesh.texture), None)
        gltf["images"] = [{"bufferView": image_view, "mimeType": "image/png", "name": f"{name}_albedo"}]
        # Linear filtering with mipmaps; clamp so atlas charts at the border do not bleed across.
        gltf["samplers"] = [{"magFilter": 9729, "minFilter": 9987, "wrapS": 33071, "wrapT": 33071}]
        gltf["textures"] = [{"sampler": 0, "source": 0}]
        pbr["baseColorTexture"] = {"index": 0, "texCoord": 0}
    elif mesh.vertex_colors is not None:
        linear = srgb_to_linear(mesh.vertex_colors).astype("<f4")
        attributes["COLOR_0"] = add_accessor(linear, "VEC3", _ARRAY_BUFFER)
    indices = add_accessor(mesh.faces.reshape(-1).astype("<u4"), "SCALAR", _ELEMENT_ARRAY_BUFFER)

    binary = b"".join(chunks)
    gltf.update(
        {
            "scene": 0,
            "scenes": [{"nodes": [0]}],
            "nodes": [{"mesh": 0, "name": name}],
            "meshes": [
                {
                    "name": name,
                    "primitives": [
                        {"attributes": attributes, "indices": indices, "material": 0, "mode": 4}
                    ],
                }
            ],
            "materials": [{"name": f"{name}_material", "pbrMetallicRoughness": pbr}],
            "accessors": accessors,
            "bufferViews": views,
            "buffers": [{"byteLength": len(binary)}],
        }
    )
    js = json.dumps(gltf, separators=(",", ":")).encode("utf-8")
    js += b" " * ((-len(js)) % 4)
    total = 12 + 8 + len(js) + 8 + len(binary)
    return b"".join(
        [
            struct.pack("<III", _GLB_MAGIC, 2, total),
            struct.pack("<II", len(js), _CHUNK_JSON),
            js,
            struct.pack("<II", len(binary), _CHUNK_BIN),
            binary,
        ]
    )


def save_glb(mesh: TexturedMesh, path: str | os.PathLike, smooth_normals: bool = False) -> Path:
    """Write ``mesh`` as a self-contained GLB at ``path`` atomically; returns the path."""
    path = Path(path)
    return atomic_write_bytes(path, glb_bytes(mesh, smooth_normals=smooth_normals, name=path.stem))


def _obj_text(mesh: TexturedMesh, mtl_name: str | None) -> str:
    header = f"# written by dreamer: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces"
    lines = [header] + ([f"mtllib {mtl_name}"] if mtl_name else [])
    # repr of a Python float of a float32 value round-trips exactly back to the same float32.
    v = mesh.vertices.astype(np.float64).tolist()
    if mesh.vertex_colors is not None and not mesh.has_texture:
        c = mesh.vertex_colors.astype(np.float64).tolist()
        lines += [f"v {a!r} {b!r} {d!r} {r:.6f} {g:.6f} {bb:.6f}" for (a, b, d), (r, g, bb) in zip(v, c)]
    else:
        lines += [f"v {a!r} {b!r} {d!r}" for a, b, d in v]
    f1 = (mesh.faces + 1).tolist()
    if mesh.has_texture:
        lines.append("usemtl material0")
        # OBJ's vt has v = 0 at the bottom of the image; TexturedMesh uses glTF's v = 0 at the top.
        uv = mesh.uvs.astype(np.float64).tolist()
        lines += [f"vt {a!r} {1.0 - b!r}" for a, b in uv]
        lines += [f"f {a}/{a} {b}/{b} {c}/{c}" for a, b, c in f1]
    else:
        lines += [f"f {a} {b} {c}" for a, b, c in f1]
    return "\n".join(lines) + "\n"


def save_obj(mesh: TexturedMesh, path: str | os.PathLike) -> list[Path]:
    """Write ``<stem>.obj`` + ``<stem>.mtl`` + ``<stem>_albedo.png`` for a textured mesh, each atomically.

    Vertex-coloured meshes are written as one OBJ with ``v x y z r g b`` lines and no MTL: a
    material would make readers (trimesh, some viewers) ignore the vertex colours.
    The PNG and MTL land before the OBJ, so whoever sees the OBJ sees a complete set.
    Returns the written paths, OBJ first.
    """
    _check_mesh(mesh)
    path = Path(path)
    if path.suffix.lower() != ".obj":
        path = path.with_suffix(".obj")
    if not mesh.has_texture:
        atomic_write_bytes(path, _obj_text(mesh, None).encode("utf-8"))
        return [path]
    mtl_path = path.with_suffix(".mtl")
    png_path = path.with_name(f"{path.stem}_albedo.png")
    mtl = ["# written by dreamer", "newmtl material0", "Ka 0 0 0", "Kd 1 1 1", "Ks 0 0 0", "Ns 10"]
    mtl += ["d 1", "illum 1", f"map_Kd {png_path.name}"]
    atomic_write_bytes(png_path, texture_to_png(mesh.texture))
    atomic_write_bytes(mtl_path, ("\n".join(mtl) + "\n").encode("utf-8"))
    atomic_write_bytes(path, _obj_text(mesh, mtl_path.name).encode("utf-8"))
    return [path, mtl_path, png_path]
