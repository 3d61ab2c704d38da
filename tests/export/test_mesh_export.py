"""GLB/OBJ export: exact round trips, atomic writes, glTF validator, Blender import, xatlas worker."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
import trimesh

from dreamer.errors import DreamerError
from dreamer.export import mesh_export
from dreamer.export.files import atomic_path, atomic_write_bytes, write_json
from dreamer.export.mesh_export import save_glb, save_obj
from dreamer.export.unwrap import unwrap_uv
from dreamer.representations.mesh import TexturedMesh
from dreamer.representations.mesh_io import load_mesh
from tests.helpers import gltf_validator_report

REPO = Path(__file__).resolve().parents[2]


def _sphere() -> trimesh.Trimesh:
    return trimesh.creation.icosphere(subdivisions=3, radius=0.6)


@pytest.fixture
def textured() -> TexturedMesh:
    s = _sphere()
    rng = np.random.default_rng(0)
    uvs = rng.uniform(0.0, 1.0, (len(s.vertices), 2)).astype(np.float32)
    texture = rng.uniform(0.0, 1.0, (48, 64, 3)).astype(np.float32)
    texture[:4] = [1.0, 0.0, 0.0]  # top rows red, to see flips
    return TexturedMesh(s.vertices, s.faces, uvs=uvs, texture=texture)


@pytest.fixture
def coloured() -> TexturedMesh:
    s = _sphere()
    colors = np.random.default_rng(1).uniform(0.0, 1.0, (len(s.vertices), 3))
    return TexturedMesh(s.vertices, s.faces, vertex_colors=colors)


def _glb_json(path: Path) -> tuple[dict, bytes]:
    data = path.read_bytes()
    magic, version, total = struct.unpack("<III", data[:12])
    assert (magic, version, total) == (0x46546C67, 2, len(data))
    n = struct.unpack("<I", data[12:16])[0]
    gltf = json.loads(data[20 : 20 + n])
    return gltf, data[20 + n + 8 :]


def test_glb_roundtrip_textured(tmp_path, textured):
    path = save_glb(textured, tmp_path / "model.glb")
    back = load_mesh(path)
    assert np.array_equal(back.vertices, textured.vertices)
    assert np.array_equal(back.faces, textured.faces)
    assert np.abs(back.uvs - textured.uvs).max() < 1e-6  # trimesh flips v in float32 and back
    assert np.abs(back.texture - textured.texture).max() <= 1 / 255 + 1e-6
    assert back.vertex_colors is None
    gltf, binary = _glb_json(path)
    pbr = gltf["materials"][0]["pbrMetallicRoughness"]
    assert pbr["metallicFactor"] == 0.0 and 0.8 <= pbr["roughnessFactor"] <= 1.0
    assert pbr["baseColorTexture"]["index"] == 0
    # TEXCOORD_0 is stored as given (glTF convention, v = 0 at the top): no flip in the file
    acc = gltf["accessors"][gltf["meshes"][0]["primitives"][0]["attributes"]["TEXCOORD_0"]]
    view = gltf["bufferViews"][acc["bufferView"]]
    stored = np.frombuffer(binary, "<f4", acc["count"] * 2, view["byteOffset"]).reshape(-1, 2)
    assert np.array_equal(stored, textured.uvs)
    assert np.allclose(back.texture[:4], [1.0, 0.0, 0.0])  # image row 0 stays row 0


def test_glb_roundtrip_vertex_colours(tmp_path, coloured):
    back = load_mesh(save_glb(coloured, tmp_path / "model.glb", smooth_normals=True))
    assert np.array_equal(back.vertices, coloured.vertices)
    assert np.array_equal(back.faces, coloured.faces)
    assert back.uvs is None and back.texture is None
    assert np.abs(back.vertex_colors - coloured.vertex_colors).max() < 1e-5
    gltf, _ = _glb_json(tmp_path / "model.glb")
    attrs = gltf["meshes"][0]["primitives"][0]["attributes"]
    assert "COLOR_0" in attrs and "NORMAL" in attrs and "TEXCOORD_0" not in attrs


def test_obj_roundtrip_textured(tmp_path, textured):
    paths = save_obj(textured, tmp_path / "model.obj")
    assert [p.name for p in paths] == ["model.obj", "model.mtl", "model_albedo.png"]
    assert all(p.is_file() for p in paths)
    back = load_mesh(paths[0])
    assert np.array_equal(back.vertices, textured.vertices)
    assert np.array_equal(back.faces, textured.faces)
    assert np.abs(back.uvs - textured.uvs).max() < 1e-6
    assert np.abs(back.texture - textured.texture).max() <= 1 / 255 + 1e-6
    # the OBJ and the GLB agree on which texel a vertex shows
    glb = load_mesh(save_glb(textured, tmp_path / "model.glb"))
    assert np.abs(glb.uvs - back.uvs).max() < 1e-6


def test_obj_roundtrip_vertex_colours(tmp_path, coloured):
    paths = save_obj(coloured, tmp_path / "model.obj")
    assert [p.name for p in paths] == ["model.obj"]
    back = load_mesh(paths[0])
    assert np.array_equal(back.vertices, coloured.vertices)
    assert np.array_equal(back.faces, coloured.faces)
    assert np.abs(back.vertex_colors - coloured.vertex_colors).max() <= 1 / 255 + 1e-6


def test_atomic_path_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.bin"
    atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
    write_json(tmp_path / "a.json", {"x": 1})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "out.bin"]


def test_failed_exports_leave_nothing(tmp_path, textured, monkeypatch):
    with pytest.raises(DreamerError):
        save_glb(TexturedMesh(np.zeros((0, 3)), np.zeros((0, 3))), tmp_path / "empty.glb")

    def broken_png(texture):
        raise OSError("disk full")

    monkeypatch.setattr(mesh_export, "texture_to_png", broken_png)
    with pytest.raises(OSError):
        save_glb(textured, tmp_path / "model.glb")
    with pytest.raises(OSError):
        save_obj(textured, tmp_path / "model.obj")
    assert list(tmp_path.iterdir()) == []


def test_gltf_validator_reports_no_errors(tmp_path, textured, coloured):
    for name, mesh in [("textured", textured), ("coloured", coloured)]:
        path = save_glb(mesh, tmp_path / f"{name}.glb", smooth_normals=name == "coloured")
        report = gltf_validator_report(path)
        assert report["numErrors"] == 0, report["messages"]
        assert report["numWarnings"] == 0, report["messages"]


_BLENDER_SCRIPT = textwrap.dedent(
    """
    import numpy
    numpy.bool = bool  # Debian's Blender 3.4 glTF importer still uses the removed alias
    import json, sys
    import bpy

    path = sys.argv[sys.argv.index("--") + 1]
    bpy.ops.wm.read_factory_settings(use_empty=True)
    if path.lower().endswith((".glb", ".gltf")):
        bpy.ops.import_scene.gltf(filepath=path)
    elif hasattr(bpy.ops.wm, "obj_import"):
        bpy.ops.wm.obj_import(filepath=path)
    else:
        bpy.ops.import_scene.obj(filepath=path)
    out = []
    for obj in bpy.context.scene.objects:
        if obj.type != "MESH":
            continue
        me = obj.data
        images = []
        for slot in obj.material_slots:
            if slot.material and slot.material.use_nodes:
                for node in slot.material.node_tree.nodes:
                    if node.type == "TEX_IMAGE" and node.image is not None:
                        images.append(list(node.image.size))
        loops = []
        if me.uv_layers:
            uv = me.uv_layers.active.data
            for poly in me.polygons:
                for li in poly.loop_indices:
                    co = me.vertices[me.loops[li].vertex_index].co
                    loops.append([round(co.x, 4), round(co.y, 4), round(co.z, 4),
                                  round(uv[li].uv[0], 4), round(uv[li].uv[1], 4)])
        out.append({"uv_layers": len(me.uv_layers), "images": images, "loops": sorted(loops)})
    print("RESULT " + json.dumps(out))
    """
)


def _blender_import(script: Path, path: Path) -> list[dict]:
    proc = subprocess.run(
        ["blender", "-b", "--factory-startup", "--python", str(script), "--", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"blender import failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return json.loads(lines[-1][len("RESULT ") :])


_BOX_SIZE = np.array([0.8, 0.6, 0.4])
_BOX_OFFSET = np.array([0.1, 0.05, 0.02])


def _to_scene(loops: list[list[float]]) -> dict[tuple, tuple]:
    """Undo whatever axis swap an importer applied (axes told apart by the box's distinct sizes,
    signs by its off-centre position) and map each corner to its uv."""
    arr = np.array(loops)
    pos = arr[:, :3]
    scene = np.zeros_like(pos)
    for k in range(3):
        j = int(np.argmin(np.abs(_BOX_SIZE - np.ptp(pos[:, k]))))
        sign = np.sign(0.5 * (pos[:, k].max() + pos[:, k].min()) / _BOX_OFFSET[j])
        scene[:, j] = sign * pos[:, k]
    return {tuple(np.round(p, 3)): tuple(uv) for p, uv in zip(scene, arr[:, 3:])}


def test_blender_imports_glb_and_obj(tmp_path):
    if shutil.which("blender") is None:
        pytest.skip("blender is not installed")
    # a small off-centre box so the per-corner comparison stays short and axes can be told apart
    box = trimesh.creation.box(_BOX_SIZE)
    box.apply_translation(_BOX_OFFSET)
    rng = np.random.default_rng(3)
    uvs = rng.uniform(0, 1, (len(box.vertices), 2))
    mesh = TexturedMesh(box.vertices, box.faces, uvs=uvs, texture=rng.uniform(0, 1, (8, 16, 3)))
    script = tmp_path / "check.py"
    script.write_text(_BLENDER_SCRIPT)
    glb = _blender_import(script, save_glb(mesh, tmp_path / "model.glb"))
    obj = _blender_import(script, save_obj(mesh, tmp_path / "obj" / "model.obj")[0])
    for result in (glb, obj):
        assert len(result) == 1
        assert result[0]["uv_layers"] >= 1
        assert result[0]["images"] == [[16, 8]]
    # Blender stores uvs with v = 0 at the bottom; the same corner gets the same Blender uv from
    # both files only if the two exports agree on the image orientation.
    a, b = _to_scene(glb[0]["loops"]), _to_scene(obj[0]["loops"])
    assert sorted(a) == sorted(b) and len(a) == 8
    for corner, uv in a.items():
        assert np.allclose(uv, b[corner], atol=1e-3)
        # and Blender's v is 1 - (our glTF-convention v)
        ours = uvs[np.argmin(np.linalg.norm(box.vertices - np.array(corner), axis=1))]
        assert np.allclose(uv, (ours[0], 1 - ours[1]), atol=1e-3)


def test_unwrap_in_subprocess():
    s = trimesh.creation.icosphere(subdivisions=2, radius=0.5)
    vmapping, faces, uvs = unwrap_uv(s.vertices, s.faces, resolution=256)
    assert faces.shape == s.faces.shape
    assert np.allclose(s.vertices[vmapping][faces], s.vertices[s.faces])
    assert uvs.shape == (len(vmapping), 2)
    assert uvs.min() >= 0.0 and uvs.max() <= 1.0


def test_unwrap_worker_crash_and_timeout_raise_dreamer_error(monkeypatch):
    s = trimesh.creation.box()
    monkeypatch.setenv("DREAMER_UNWRAP_TEST_CRASH", "1")
    with pytest.raises(DreamerError) as err:
        unwrap_uv(s.vertices, s.faces)
    assert "decimate" in str(err.value) and "\n" not in str(err.value)
    monkeypatch.delenv("DREAMER_UNWRAP_TEST_CRASH")
    with pytest.raises(DreamerError, match="decimate"):
        unwrap_uv(s.vertices, s.faces, timeout_s=0.01)
