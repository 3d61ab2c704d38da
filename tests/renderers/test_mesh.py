"""Mesh renderer: coverage, depth, conventions, interpolation, texturing, baking and gradients."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from dreamer.cameras import orbit_cameras
from renderers.mesh import antialias, interpolate, rasterize, rasterize_uv, render_mesh, texture


def _centres(H: int, W: int, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Clip-space x, y of pixel centres, [H, W] each, row 0 = y = -1 (nvdiffrast order)."""
    y = (2 * torch.arange(H, dtype=dtype) + 1) / H - 1
    x = (2 * torch.arange(W, dtype=dtype) + 1) / W - 1
    return x.view(1, W).expand(H, W), y.view(H, 1).expand(H, W)


def _cube(size: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """24-vertex axis-aligned cube (flat vertex normals), faces, and per-face outward normals."""
    verts, faces, normals = [], [], []
    for axis in range(3):
        for sign in (1.0, -1.0):
            n = torch.zeros(3)
            n[axis] = sign
            a, b = [i for i in range(3) if i != axis]
            quad = []
            for s, t in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                p = torch.zeros(3)
                p[axis], p[a], p[b] = sign, s, t
                quad.append(p * size / 2)
            if torch.dot(torch.linalg.cross(quad[1] - quad[0], quad[2] - quad[0]), n) < 0:
                quad = quad[::-1]  # outward (counter-clockwise) winding
            base = len(verts)
            verts += quad
            faces += [[base, base + 1, base + 2], [base, base + 2, base + 3]]
            normals += [n, n]
    return torch.stack(verts), torch.tensor(faces), torch.stack(normals)


def test_single_triangle_coverage_and_barycentric_convention() -> None:
    H, W = 24, 32
    pos = torch.tensor([[-0.71, -0.83, 0.1, 1.0], [0.77, -0.37, 0.2, 1.0], [-0.13, 0.91, 0.3, 1.0]])
    rast = rasterize(pos, torch.tensor([[0, 1, 2]]), (H, W))
    assert rast.shape == (1, H, W, 4)
    x, y = _centres(H, W)
    p = pos.double()

    def edge(a: int, b: int) -> torch.Tensor:
        return (p[b, 0] - p[a, 0]) * (y - p[a, 1]) - (p[b, 1] - p[a, 1]) * (x - p[a, 0])

    e = torch.stack([edge(1, 2), edge(2, 0), edge(0, 1)])
    inside = (e > 0).all(0) | (e < 0).all(0)
    assert inside.sum() > 50
    assert torch.equal(rast[0, ..., 3] == 1, inside)
    # u weights vertex 0, v vertex 1, 1 - u - v vertex 2 (nvdiffrast's interpolate kernel).
    u, v = rast[0, ..., 0].double(), rast[0, ..., 1].double()
    rx = u * p[0, 0] + v * p[1, 0] + (1 - u - v) * p[2, 0]
    ry = u * p[0, 1] + v * p[1, 1] + (1 - u - v) * p[2, 1]
    assert torch.allclose(rx[inside], x[inside], atol=1e-5)
    assert torch.allclose(ry[inside], y[inside], atol=1e-5)
    zw = u * p[0, 2] + v * p[1, 2] + (1 - u - v) * p[2, 2]
    assert torch.allclose(rast[0, ..., 2].double()[inside], zw[inside], atol=1e-5)
    assert (rast[0][~inside] == 0).all()


def test_perspective_correct_interpolation() -> None:
    H, W = 16, 16
    world = torch.tensor([[-1.0, -1.0, -2.0], [1.5, -1.0, -4.0], [0.0, 1.5, -3.0]])
    # A simple perspective: clip = (x, y, z*1.01 + 0.1, -z) (camera looks down -z).
    pos = torch.stack([world[:, 0], world[:, 1], world[:, 2] * 1.01 + 0.1, -world[:, 2]], -1)
    tri = torch.tensor([[0, 1, 2]])
    rast = rasterize(pos, tri, (H, W))
    pts = interpolate(world, rast, tri)[0]
    mask = rast[0, ..., 3] > 0
    x, y = _centres(H, W, torch.float32)
    assert mask.sum() > 20
    assert torch.allclose((pts[..., 0] / -pts[..., 2])[mask], x[mask], atol=1e-5)
    assert torch.allclose((pts[..., 1] / -pts[..., 2])[mask], y[mask], atol=1e-5)


def test_nearer_quad_wins_with_analytic_depth() -> None:
    # Far quad (z = 0) listed after the near quad (z = 0.5) in one order, before it in the other.
    far = torch.tensor([[-0.8, -0.8, 0.0], [0.8, -0.8, 0.0], [0.8, 0.8, 0.0], [-0.8, 0.8, 0.0]])
    near = far * torch.tensor([0.5, 0.5, 1.0]) + torch.tensor([0.1, 0.0, 0.5])
    cams = orbit_cameras(0.0, 0.0, radius=3.0, fovy_deg=40.0)
    for order in ((far, near), (near, far)):
        verts = torch.cat(order)
        faces = torch.tensor([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
        near_ids = {2, 3} if order[1] is near else {0, 1}
        out = render_mesh(verts, faces, cams.mvp(32, 32), cams.w2c(), (32, 32))
        tid = out.triangle_id[0]
        centre = tid[14:18, 16:20]
        assert all(int(t) in near_ids for t in centre.flatten())
        near_mask = torch.isin(tid, torch.tensor(sorted(near_ids)))
        far_mask = (tid >= 0) & ~near_mask
        assert near_mask.sum() > 20 and far_mask.sum() > 20
        assert torch.allclose(out.depth[0, ..., 0][near_mask], torch.tensor(2.5), atol=1e-4)
        assert torch.allclose(out.depth[0, ..., 0][far_mask], torch.tensor(3.0), atol=1e-4)
        assert (out.depth[0, ..., 0][tid < 0] == 0).all()


def test_cube_normals_and_image_orientation() -> None:
    verts, faces, fnormals = _cube()
    H = W = 64
    cams = orbit_cameras([0.0, 25.0, 0.0], [0.0, 0.0, 35.0], radius=3.0, fovy_deg=45.0)
    out = render_mesh(verts, faces, cams.mvp(H, W), cams.w2c(), (H, W))
    # Straight on: the centre shows the front (+z) face, normal (0, 0, 1) in world and camera.
    c = out.normal_world[0, H // 2, W // 2]
    assert torch.allclose(c, torch.tensor([0.0, 0.0, 1.0]), atol=1e-5)
    assert torch.allclose(out.normal_cam[0, H // 2, W // 2], torch.tensor([0.0, 0.0, 1.0]), atol=1e-5)
    assert torch.allclose(out.face_normal_world[0, H // 2, W // 2], torch.tensor([0.0, 0.0, 1.0]), atol=1e-5)
    assert abs(float(out.depth[0, H // 2, W // 2, 0]) - 2.5) < 1e-4
    # Face normals match the visible triangle's.
    m = out.triangle_id >= 0
    assert torch.allclose(out.face_normal_world[m], fnormals[out.triangle_id[m]], atol=1e-5)
    # Every visible surface faces the camera: +z in the OpenGL camera frame.
    assert (out.normal_cam[..., 2][m] > 0.2).all()
    # Elevated camera: the top face (+y) is visible and sits above (smaller rows than) the front.
    n1 = out.normal_world[1]
    top_rows = (n1[..., 1] > 0.99).nonzero()[:, 0].float()
    front_rows = (n1[..., 2] > 0.99).nonzero()[:, 0].float()
    assert len(top_rows) > 20 and len(front_rows) > 20
    assert top_rows.mean() < front_rows.mean()
    # Camera swung towards +x: the +x face is on the image's right, the +z face on its left.
    n2 = out.normal_world[2]
    right_cols = (n2[..., 0] > 0.99).nonzero()[:, 1].float()
    front_cols = (n2[..., 2] > 0.99).nonzero()[:, 1].float()
    assert len(right_cols) > 20 and len(front_cols) > 20
    assert right_cols.mean() > W / 2 > front_cols.mean()
    assert (out.alpha.sum((1, 2, 3)) > 0.1 * H * W).all()
    assert out.position_world[m].abs().max() <= 0.5 + 1e-5


def _screen_quad(
    H: int, W: int, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A quad exactly filling clip space at z = 0, identity matrices, glTF uvs (0, 0) top-left."""
    verts = torch.tensor(
        [[-1.0, -1.0, 0.0], [1.0, -1.0, 0.0], [1.0, 1.0, 0.0], [-1.0, 1.0, 0.0]], dtype=dtype
    )
    uvs = torch.tensor([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]], dtype=dtype)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    eye = torch.eye(4, dtype=dtype).unsqueeze(0)
    return verts, uvs, faces, eye


def test_texture_and_vertex_colours_reproduce_gltf_orientation() -> None:
    H, W = 12, 16
    verts, uvs, faces, eye = _screen_quad(H, W)
    tex = torch.rand(H, W, 3, generator=torch.Generator().manual_seed(0))
    tex[0] = torch.tensor([1.0, 0.0, 0.0])  # top row of the image is red
    out = render_mesh(verts, faces, eye, eye, (H, W), uvs=uvs, texture=tex)
    assert (out.alpha == 1).all()
    assert torch.allclose(out.rgb[0], tex, atol=1e-5)
    assert torch.allclose(out.rgb[0, 0], torch.tensor([1.0, 0.0, 0.0]).expand(W, 3), atol=1e-5)
    r = (torch.arange(H) + 0.5) / H
    c = (torch.arange(W) + 0.5) / W
    assert torch.allclose(out.uv[0, ..., 1], r.view(H, 1).expand(H, W), atol=1e-5)
    assert torch.allclose(out.uv[0, ..., 0], c.view(1, W).expand(H, W), atol=1e-5)
    # Vertex colours (u, v, 0.5) interpolate linearly across the screen.
    colours = torch.cat([uvs, torch.full((4, 1), 0.5)], -1)
    bg = torch.tensor([[0.2, 0.3, 0.4]])
    out = render_mesh(verts, faces, eye, eye, (H, W), vertex_colors=colours, background=bg)
    assert torch.allclose(
        out.rgb[0, ..., :2],
        out.uv[0]
        if out.uv is not None
        else torch.stack([c.view(1, W).expand(H, W), r.view(H, 1).expand(H, W)], -1),
        atol=1e-5,
    )
    # Background shows where nothing is drawn.
    small = verts * 0.5
    out = render_mesh(small, faces, eye, eye, (H, W), vertex_colors=colours, background=bg)
    assert torch.allclose(out.rgb[0, 0, 0], bg[0])
    assert (out.triangle_id[0, 0, 0] == -1) and out.alpha[0, 0, 0, 0] == 0


def test_texture_boundary_modes() -> None:
    tex = torch.arange(4.0).view(1, 1, 4, 1)
    uv = torch.tensor([[[[1.0 / 8, 0.5], [-1.0 / 8, 0.5], [0.0, 0.5], [9.0 / 8, 0.5]]]])
    clamp = texture(tex, uv, boundary_mode="clamp")[0, 0, :, 0]
    wrap = texture(tex, uv, boundary_mode="wrap")[0, 0, :, 0]
    assert torch.allclose(clamp, torch.tensor([0.0, 0.0, 0.0, 3.0]))
    assert torch.allclose(wrap, torch.tensor([0.0, 3.0, 1.5, 0.0]))
    near = texture(tex, uv[..., :1, :] + 0.3, filter_mode="nearest")
    assert float(near.flatten()[0]) == 1.0


def test_rasterize_uv_covers_triangle_texels() -> None:
    Ht, Wt = 20, 24
    uvs = torch.tensor([[0.1, 0.15], [0.85, 0.3], [0.3, 0.9], [0.95, 0.02], [0.955, 0.02], [0.95, 0.95]])
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    tid, bary = rasterize_uv(uvs, faces, (Ht, Wt), conservative=False)
    cx = ((torch.arange(Wt) + 0.5) / Wt).view(1, Wt).expand(Ht, Wt).double()
    cy = ((torch.arange(Ht) + 0.5) / Ht).view(Ht, 1).expand(Ht, Wt).double()
    p = uvs.double()

    def edge(a: int, b: int) -> torch.Tensor:
        return (p[b, 0] - p[a, 0]) * (cy - p[a, 1]) - (p[b, 1] - p[a, 1]) * (cx - p[a, 0])

    e = torch.stack([edge(1, 2), edge(2, 0), edge(0, 1)])
    inside = (e > 0).all(0) | (e < 0).all(0)
    assert torch.equal(tid == 0, inside)
    # Barycentrics reproduce each texel centre (row r is glTF v = (r + 0.5) / Ht: no flip).
    rec = torch.einsum("hwk,kc->hwc", bary.double(), p[:3])
    assert torch.allclose(rec[inside], torch.stack([cx, cy], -1)[inside], atol=1e-5)
    assert torch.allclose(bary.sum(-1)[tid >= 0], torch.tensor(1.0))
    # The sliver (0.12 texel wide) hits no texel centre; the conservative pass fills its column.
    assert (tid == 1).sum() == 0
    tid_c, bary_c = rasterize_uv(uvs, faces, (Ht, Wt))
    assert torch.equal(tid_c[inside], tid[inside])
    sliver_rows = (tid_c == 1).any(1).sum()
    assert sliver_rows >= Ht - 2
    assert (bary_c[tid_c >= 0] >= 0).all()
    assert torch.allclose(bary_c.sum(-1)[tid_c >= 0].float(), torch.tensor(1.0))


def _lumpy_mesh(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    verts, faces, _ = _cube(1.0)
    verts = verts.to(dtype) + 0.03 * torch.randn(verts.shape, generator=g, dtype=dtype)
    return verts, faces


def test_gradcheck_positions_colours_texture() -> None:
    H = W = 12
    verts, faces = _lumpy_mesh(torch.float64)
    cams = orbit_cameras([20.0], [30.0], radius=3.0)
    mvp, w2c = cams.mvp(H, W).double(), cams.w2c().double()
    base = render_mesh(verts, faces, mvp, w2c, (H, W))
    assert base.alpha.sum() > 30

    def geometry(v: torch.Tensor) -> tuple[torch.Tensor, ...]:
        o = render_mesh(v, faces, mvp, w2c, (H, W))
        return o.depth, o.normal_world, o.normal_cam, o.position_world, o.face_normal_world

    v = verts.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(geometry, (v,), eps=1e-6, atol=1e-5, fast_mode=True)

    colours = torch.rand(verts.shape[0], 3, dtype=torch.float64, requires_grad=True)
    fn = lambda col: render_mesh(verts, faces, mvp, w2c, (H, W), vertex_colors=col).rgb
    assert torch.autograd.gradcheck(fn, (colours,), eps=1e-6, atol=1e-6, fast_mode=True)

    uvs = torch.rand(verts.shape[0], 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    tex = torch.rand(5, 6, 3, dtype=torch.float64, requires_grad=True)
    fn_t = lambda t: render_mesh(verts, faces, mvp, w2c, (H, W), uvs=uvs, texture=t).rgb
    assert torch.autograd.gradcheck(fn_t, (tex,), eps=1e-6, atol=1e-6, fast_mode=True)

    uv = (torch.rand(1, 4, 4, 2, dtype=torch.float64) * 1.4 - 0.2).requires_grad_(True)
    for mode in ("clamp", "wrap"):
        fn_uv = lambda u, t, mode=mode: texture(t.unsqueeze(0), u, boundary_mode=mode)
        assert torch.autograd.gradcheck(fn_uv, (uv, tex), eps=1e-6, atol=1e-6, fast_mode=True)


def test_gradients_flow_to_clip_positions_like_nvdiffrast() -> None:
    # d(u, v)/d(pos) from the torch backend matches finite differences of the analytic solution.
    pos = torch.tensor(
        [[-0.7, -0.6, 0.1, 1.1], [0.8, -0.4, 0.2, 0.9], [-0.1, 0.9, 0.3, 1.3]],
        dtype=torch.float64,
        requires_grad=True,
    )
    tri = torch.tensor([[0, 1, 2]])
    rast = rasterize(pos, tri, (8, 8))
    mask = rast[..., 3] > 0
    assert torch.autograd.gradcheck(
        lambda p: rasterize(p, tri, (8, 8))[..., :2][mask], (pos,), eps=1e-6, atol=1e-6
    )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.skipif(importlib.util.find_spec("nvdiffrast") is None, reason="needs nvdiffrast")
def test_nvdiffrast_and_torch_backends_agree() -> None:
    import trimesh

    m = trimesh.creation.icosphere(subdivisions=4)
    verts = torch.tensor(m.vertices, dtype=torch.float32) * torch.tensor([0.8, 0.6, 0.7])
    faces = torch.tensor(m.faces, dtype=torch.int64)
    cams = orbit_cameras([10.0, 30.0], [20.0, 200.0], radius=2.5)
    H, W = 96, 128
    mvp = cams.mvp(H, W)
    pos = torch.einsum("cij,vj->cvi", mvp, torch.cat([verts, torch.ones(len(verts), 1)], -1))
    attr = torch.cat([verts, torch.rand(len(verts), 2)], -1)
    r_t = rasterize(pos, faces, (H, W), backend="torch")
    r_n = rasterize(pos.cuda(), faces.cuda(), (H, W), backend="nvdiffrast").cpu()
    same = r_t[..., 3] == r_n[..., 3]
    assert same.float().mean() >= 0.99
    interior = same & (r_t[..., 3] > 0)
    a_t = interpolate(attr, r_t, faces, backend="torch")
    a_n = interpolate(attr.cuda(), r_n.cuda(), faces.cuda(), backend="nvdiffrast").cpu()
    assert torch.allclose(a_t[interior], a_n[interior], atol=1e-4)
    assert torch.allclose(r_t[..., :3][interior], r_n[..., :3][interior], atol=1e-4)
    o_t = render_mesh(verts, faces, mvp, cams.w2c(), (H, W), vertex_colors=attr[:, :3], backend="torch")
    o_n = render_mesh(
        verts.cuda(),
        faces.cuda(),
        mvp.cuda(),
        cams.w2c().cuda(),
        (H, W),
        vertex_colors=attr[:, :3].cuda(),
        backend="nvdiffrast",
    )
    both = (o_t.triangle_id == o_n.triangle_id.cpu()) & (o_t.triangle_id >= 0)
    assert torch.allclose(o_t.rgb[both], o_n.rgb.cpu()[both], atol=1e-4)
    assert torch.allclose(o_t.depth[both], o_n.depth.cpu()[both], atol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.skipif(importlib.util.find_spec("nvdiffrast") is None, reason="needs nvdiffrast")
def test_nvdiffrast_and_torch_antialias_agree() -> None:
    """Same scene, both antialias ops: identical away from silhouettes, close in total coverage,
    and silhouette gradients pointing the same way."""
    import trimesh

    m = trimesh.creation.icosphere(subdivisions=3)
    verts = torch.tensor(m.vertices, dtype=torch.float32) * torch.tensor([0.8, 0.6, 0.7])
    faces = torch.tensor(m.faces, dtype=torch.int64)
    cams = orbit_cameras([10.0, 30.0], [20.0, 200.0], radius=2.5)
    H, W = 96, 128
    pos = torch.einsum("cij,vj->cvi", cams.mvp(H, W), torch.cat([verts, torch.ones(len(verts), 1)], -1))
    out = {}
    for backend, dev in (("torch", "cpu"), ("nvdiffrast", "cuda")):
        p = pos.to(dev).requires_grad_(True)
        rast = rasterize(p, faces.to(dev), (H, W), backend=backend)
        cover = antialias((rast[..., 3:4] > 0).float(), rast, p, faces.to(dev), backend=backend)
        cover.sum().backward()
        out[backend] = (rast.detach().cpu(), cover.detach().cpu(), p.grad.cpu())
    (r_t, c_t, g_t), (r_n, c_n, g_n) = out["torch"], out["nvdiffrast"]
    same = (r_t[..., 3] == r_n[..., 3]) & (c_t[..., 0] == 1) & (c_n[..., 0] == 1)
    assert same.float().mean() > 0.3
    assert abs(c_t.sum().item() - c_n.sum().item()) / c_n.sum().item() < 0.01
    cos = torch.nn.functional.cosine_similarity(g_t[..., :2].flatten(), g_n[..., :2].flatten(), dim=0)
    assert cos > 0.8


def test_closed_mesh_renders_without_cracks() -> None:
    import scipy.ndimage as nd
    import trimesh

    m = trimesh.creation.icosphere(subdivisions=4)
    verts = torch.tensor(m.vertices, dtype=torch.float32) * 0.8
    cams = orbit_cameras([0.0, 30.0, -20.0], [0.0, 77.0, 200.0], radius=2.5)
    out = render_mesh(verts, torch.tensor(m.faces), cams.mvp(96, 96), cams.w2c(), (96, 96))
    for a in out.alpha[..., 0].bool().numpy():
        assert a.sum() > 1000
        assert not (nd.binary_fill_holes(a) & ~a).any()


def _triangle_clip() -> tuple[torch.Tensor, torch.Tensor]:
    pos = torch.tensor([[-0.6, -0.5, 0.0, 1.0], [0.7, -0.4, 0.0, 1.0], [0.1, 0.65, 0.0, 1.0]], dtype=torch.float64)
    return pos, torch.tensor([[0, 1, 2]])


def test_antialias_gradcheck_moves_silhouettes() -> None:
    """Coverage after antialiasing is a smooth function of the vertices: gradcheck passes, and
    the gradients are not zero (without antialias the silhouette has none)."""
    pos, tri = _triangle_clip()
    pos.requires_grad_(True)

    def coverage(p: torch.Tensor) -> torch.Tensor:
        rast = rasterize(p, tri, (12, 12), backend="torch")
        return antialias((rast[..., 3:4] > 0).to(p.dtype), rast, p, tri, backend="torch")

    assert torch.autograd.gradcheck(coverage, (pos,), eps=1e-6, atol=1e-5)
    coverage(pos).sum().backward()
    assert pos.grad[:, :2].abs().sum() > 0


def test_antialiased_coverage_matches_the_analytic_area() -> None:
    pos, tri = _triangle_clip()
    d1, d2 = pos[1, :2] - pos[0, :2], pos[2, :2] - pos[0, :2]
    area_ndc = 0.5 * abs(float(d1[0] * d2[1] - d1[1] * d2[0]))  # in clip units; the image is 2 x 2
    for res in (24, 64):
        rast = rasterize(pos, tri, (res, res), backend="torch")
        hard = (rast[..., 3:4] > 0).double()
        soft = antialias(hard, rast, pos, tri, backend="torch")
        px = (res / 2) ** 2
        assert abs(soft.sum().item() / px - area_ndc) < 0.2 / res  # converges like 1 / resolution
        assert not torch.equal(soft, hard)


def test_antialias_leaves_edges_inside_a_closed_mesh_alone() -> None:
    """Edges between two visible faces are not silhouettes: a flat colour stays flat inside."""
    verts, faces, _ = _cube(1.0)
    cams = orbit_cameras(25.0, 30.0, radius=3.0, fovy_deg=40.0)
    vh = torch.cat([verts, torch.ones(len(verts), 1)], -1)
    pos = torch.einsum("cij,vj->cvi", cams.mvp(48, 48), vh)
    rast = rasterize(pos, faces, (48, 48), backend="torch")
    inside = (rast[..., 3:4] > 0).float()
    out = antialias(inside, rast, pos, faces, backend="torch")
    eroded = inside.clone()
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        eroded = eroded * inside.roll((dy, dx), dims=(1, 2))
    assert torch.equal(out[eroded > 0], inside[eroded > 0])
    assert (out != inside).any()  # the outline itself is antialiased
