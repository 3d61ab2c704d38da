"""load_mesh: face/vertex colours, textures, material colours, multi-node scenes, errors."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from PIL import Image

from dreamer.errors import DreamerError
from dreamer.export.mesh_export import linear_to_srgb, save_glb, srgb_to_linear
from dreamer.representations.mesh import TexturedMesh
from dreamer.representations.mesh_io import load_mesh, sample_texture


def test_face_colours_are_unwelded(tmp_path):
    box = trimesh.creation.box((0.5, 0.5, 0.5))
    colors = np.random.default_rng(0).integers(0, 256, (len(box.faces), 3), dtype=np.uint8)
    box.visual.face_colors = np.concatenate([colors, np.full((len(colors), 1), 255, np.uint8)], 1)
    box.export(tmp_path / "box.ply")
    mesh = load_mesh(tmp_path / "box.ply")
    assert mesh.vertices.shape == (3 * len(box.faces), 3)
    assert np.allclose(mesh.vertices[mesh.faces], box.vertices[box.faces])
    assert np.allclose(mesh.vertex_colors.reshape(-1, 3, 3), colors[:, None, :] / 255.0)


def test_vertex_colours_ply_and_trimesh_glb(tmp_path):
    s = trimesh.creation.icosphere(2, radius=0.5)
    colors = np.random.default_rng(1).integers(0, 256, (len(s.vertices), 3), dtype=np.uint8)
    s.visual.vertex_colors = colors
    s.export(tmp_path / "s.ply")
    mesh = load_mesh(tmp_path / "s.ply")
    assert np.allclose(mesh.vertices, s.vertices, atol=1e-6)
    assert np.array_equal(mesh.faces, s.faces)
    assert np.allclose(mesh.vertex_colors, colors / 255.0)
    # a GLB written by someone else: COLOR_0 is linear by the spec, so we get its sRGB back
    s.export(tmp_path / "s.glb")
    mesh = load_mesh(tmp_path / "s.glb")
    assert mesh.vertex_colors is not None and mesh.vertex_colors.shape == (len(s.vertices), 3)
    assert np.allclose(mesh.vertex_colors, linear_to_srgb(colors / 255.0), atol=2e-3)


def _quad_with_image(image: np.ndarray, material) -> trimesh.Trimesh:
    vertices = np.array([[-0.5, -0.5, 0], [0.5, -0.5, 0], [0.5, 0.5, 0], [-0.5, 0.5, 0]])
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float64)  # trimesh: v = 0 at the bottom
    return trimesh.Trimesh(
        vertices, faces, visual=trimesh.visual.TextureVisuals(uv=uv, material=material), process=False
    )


def test_pbr_texture_orientation_and_base_colour_factor(tmp_path):
    image = np.zeros((8, 8, 3), np.uint8)
    image[:4] = [255, 0, 0]  # top half red
    image[4:] = [0, 0, 255]  # bottom half blue
    factor = np.array([255, 128, 255, 255], np.uint8)
    material = trimesh.visual.material.PBRMaterial(
        baseColorTexture=Image.fromarray(image), baseColorFactor=factor
    )
    _quad_with_image(image, material).export(tmp_path / "quad.glb")
    mesh = load_mesh(tmp_path / "quad.glb")
    assert mesh.has_texture and mesh.texture.shape == (8, 8, 3)
    # the vertex at the top of the quad (y = +0.5) samples the top (red) rows
    top = np.argmax(mesh.vertices[:, 1])
    assert mesh.uvs[top, 1] < 0.01
    assert np.allclose(sample_texture(mesh.texture, mesh.uvs[top : top + 1])[0], [1, 0, 0])
    # baseColorFactor (linear) multiplied into the texture
    expected = linear_to_srgb(srgb_to_linear(np.array([0, 0, 1.0])) * factor[:3] / 255.0)
    assert np.allclose(mesh.texture[-1, 0], expected, atol=1e-6)


def test_obj_with_texture_and_kd_only_material(tmp_path):
    image = np.random.default_rng(2).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    material = trimesh.visual.material.SimpleMaterial(image=Image.fromarray(image))
    _quad_with_image(image, material).export(tmp_path / "quad.obj")
    mesh = load_mesh(tmp_path / "quad.obj")
    assert mesh.has_texture
    assert np.allclose(mesh.texture, image / 255.0, atol=1e-6)
    (tmp_path / "plain.obj").write_text("mtllib plain.mtl\nusemtl red\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    (tmp_path / "plain.mtl").write_text("newmtl red\nKd 0.8 0.2 0.1\n")
    mesh = load_mesh(tmp_path / "plain.obj")
    assert np.allclose(mesh.vertex_colors, [[0.8, 0.2, 0.1]] * 3, atol=2 / 255)


def test_gltf_base_colour_factor_only(tmp_path):
    box = trimesh.creation.box((0.4, 0.4, 0.4))
    material = trimesh.visual.material.PBRMaterial(baseColorFactor=[0.5, 0.25, 1.0, 1.0])
    box.visual = trimesh.visual.TextureVisuals(material=material)
    box.export(tmp_path / "box.glb")
    mesh = load_mesh(tmp_path / "box.glb")
    assert not mesh.has_texture
    assert np.allclose(mesh.vertex_colors, linear_to_srgb(np.array([0.5, 0.25, 1.0])), atol=3e-3)


def test_multi_node_scene_applies_transforms(tmp_path):
    a = trimesh.creation.box((0.2, 0.2, 0.2))
    a.visual.face_colors = [255, 0, 0, 255]
    b = trimesh.creation.icosphere(1, radius=0.1)
    b.visual.face_colors = [0, 0, 255, 255]
    ta = trimesh.transformations.translation_matrix([0.3, 0.0, 0.0])
    tb = trimesh.transformations.rotation_matrix(
        np.pi / 2, [0, 1, 0]
    ) @ trimesh.transformations.translation_matrix([0.0, 0.4, -0.2])
    scene = trimesh.Scene()
    scene.add_geometry(a, node_name="a", transform=ta)
    scene.add_geometry(b, node_name="b", transform=tb)
    scene.export(tmp_path / "scene.glb")
    mesh = load_mesh(tmp_path / "scene.glb")
    red = np.all(np.abs(mesh.vertex_colors - [1, 0, 0]) < 0.02, axis=1)
    blue = np.all(np.abs(mesh.vertex_colors - [0, 0, 1]) < 0.02, axis=1)
    assert red.any() and blue.any() and np.all(red | blue)
    assert np.allclose(mesh.vertices[red].mean(0), [0.3, 0, 0], atol=1e-5)
    # rotating (0, 0.4, -0.2) by 90 degrees about y gives (-0.2, 0.4, 0)
    assert np.allclose(mesh.vertices[blue].mean(0), [-0.2, 0.4, 0.0], atol=1e-2)
    # faces still wind outward (positive volume of the closed parts)
    assert trimesh.Trimesh(mesh.vertices, mesh.faces).volume > 0


def test_multi_node_textured_parts_are_atlased(tmp_path):
    parts = []
    for k, colour in enumerate([(1.0, 0.0, 0.0), (0.0, 1.0, 0.0)]):
        s = trimesh.creation.box((0.2, 0.2, 0.2))
        s.apply_translation([0.3 * k, 0, 0])
        tex = np.tile(np.array(colour, np.float32), (4, 4 + 4 * k, 1))
        uvs = np.random.default_rng(k).uniform(0, 1, (len(s.vertices), 2))
        parts.append(TexturedMesh(s.vertices, s.faces, uvs=uvs, texture=tex))
    scene = trimesh.Scene()
    for k, part in enumerate(parts):
        save_glb(part, tmp_path / f"p{k}.glb")
        scene.add_geometry(
            trimesh.load(tmp_path / f"p{k}.glb", force="mesh", process=False), node_name=f"n{k}"
        )
    scene.export(tmp_path / "both.glb")
    mesh = load_mesh(tmp_path / "both.glb")
    assert mesh.has_texture
    colours = sample_texture(mesh.texture, mesh.uvs)
    left = mesh.vertices[:, 0] < 0.15
    assert np.allclose(colours[left], [1, 0, 0], atol=1e-5)
    assert np.allclose(colours[~left], [0, 1, 0], atol=1e-5)


@pytest.mark.parametrize(
    "name, content, words",
    [
        ("missing.glb", None, "not found"),
        ("broken.glb", b"this is not a glb file at all", "could not read"),
        ("broken.obj", b"v 1 2\nf 9 9 9 x\n", None),
        ("model.fbx", b"Kaydara FBX Binary", "unsupported"),
        (
            "points.ply",
            b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
            b"property float z\nend_header\n0 0 0\n",
            "no triangles",
        ),
    ],
)
def test_bad_files_raise_one_line(tmp_path, name, content, words):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DreamerError) as err:
        load_mesh(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    if words:
        assert words in message
