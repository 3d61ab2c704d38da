"""Volume rendering: rays, compositing against closed forms, empty-space skipping, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from dreamer.cameras import orbit_cameras
from dreamer.representations.fields import DensityField, FieldConfig
from dreamer.representations.hash_grid import HashGridConfig
from renderers.volume import OccupancyGrid, camera_rays, render_rays


def ball(sigma: float, radius: float = 0.5):
    """alpha_fn of a uniform ball, with a constant red albedo."""

    def alpha_fn(points, dirs, deltas):
        inside = (points.norm(dim=-1) < radius).to(points.dtype)
        albedo = torch.tensor([1.0, 0.0, 0.0], dtype=points.dtype).expand(len(points), 3)
        return 1.0 - torch.exp(-sigma * inside * deltas), {"albedo": albedo}

    return alpha_fn


def central_and_missing_rays():
    origins = torch.tensor([[0.0, 0.0, 2.5], [0.0, 0.9, 2.5]])
    dirs = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]])
    return origins, dirs


def test_uniform_ball_follows_beer_lambert():
    origins, dirs = central_and_missing_rays()
    out = render_rays(ball(3.0), origins, dirs, radius=1.0, num_samples=512)
    # through the centre the ray crosses 1.0 of the medium; the second ray misses the ball
    assert out.opacity[0, 0] == pytest.approx(1.0 - math.exp(-3.0), abs=0.01)
    assert out.opacity[1, 0] == pytest.approx(0.0, abs=1e-6)
    assert torch.allclose(out.values["albedo"][0], torch.tensor([1.0, 0.0, 0.0]) * out.opacity[0, 0])


def test_opaque_ball_depth_is_the_distance_to_its_surface():
    origins, dirs = central_and_missing_rays()
    out = render_rays(ball(2000.0), origins, dirs, radius=1.0, num_samples=512)
    assert out.opacity[0, 0] == pytest.approx(1.0, abs=1e-4)
    assert out.depth[0, 0] == pytest.approx(2.0, abs=2.0 / 512 + 1e-3)


def test_occupancy_grid_skips_only_empty_space():
    cams = orbit_cameras([20.0, -10.0], [30.0, 200.0], 2.6, 40.0)
    origins, dirs = (t.reshape(-1, 3) for t in camera_rays(cams.c2w, cams.fovy_deg, 24, 24))
    fn = ball(5.0, radius=0.4)
    grid = OccupancyGrid(16, 1.0)
    grid.update(lambda p: fn(p, p, torch.full(p.shape[:1], 2.0 / 64))[0])
    full = render_rays(fn, origins, dirs, radius=1.0, num_samples=64)
    skipped = render_rays(fn, origins, dirs, radius=1.0, num_samples=64, grid=grid)
    assert len(skipped.weights) < 0.5 * len(full.weights)
    assert torch.allclose(full.opacity, skipped.opacity, atol=1e-6)
    assert torch.allclose(full.values["albedo"], skipped.values["albedo"], atol=1e-6)


def test_camera_rays_pass_through_projected_points():
    cams = orbit_cameras([25.0], [40.0], 2.5, 45.0)
    H = W = 32
    origins, dirs = camera_rays(cams.c2w, cams.fovy_deg, H, W)
    points = torch.tensor([[0.2, -0.1, 0.3], [-0.4, 0.3, 0.0], [0.0, 0.0, 0.0]])
    clip = torch.cat([points, torch.ones(3, 1)], -1) @ cams.mvp(H, W)[0].T
    ndc = clip[:, :2] / clip[:, 3:]
    col = ((ndc[:, 0] + 1) * 0.5 * W).long()
    row = ((1 - ndc[:, 1]) * 0.5 * H).long()  # image row 0 is the top
    for p, r, c in zip(points, row, col):
        o, d = origins[0, r, c], dirs[0, r, c]
        off_ray = torch.linalg.cross(p - o, d).norm()
        pixel = 2.5 * math.tan(math.radians(45.0) / 2) * 2 / H * 1.5  # a pixel at this depth, with slack
        assert off_ray < pixel


def test_nerf_render_gradients_match_finite_differences():
    torch.manual_seed(0)
    cfg = FieldConfig(encoding=HashGridConfig(levels=2, features=2, log2_hashmap_size=8, base_resolution=4), hidden=8)
    field = DensityField(cfg, blob_strength=3.0, blob_radius=0.6).double().train()
    with torch.no_grad():
        field.encoding.table.normal_(0.0, 0.5)
    cams = orbit_cameras([15.0], [30.0], 2.5, 40.0)
    origins, dirs = (t.reshape(-1, 3).double() for t in camera_rays(cams.c2w, cams.fovy_deg, 3, 3))
    weights = {k: torch.randn(9, 3, dtype=torch.float64) for k in ("albedo", "normal")}

    def loss() -> torch.Tensor:
        out = render_rays(field.alpha, origins, dirs, radius=1.0, num_samples=16)
        return out.opacity.sum() + sum((out.values[k] * w).sum() for k, w in weights.items())

    params = [field.encoding.table, field.geometry_head[0].weight, field.albedo_head[2].weight]
    grads = torch.autograd.grad(loss(), params)
    for p, g in zip(params, grads):
        direction = torch.randn_like(p)
        eps = 1e-6
        with torch.no_grad():
            p += eps * direction
            up = loss()
            p -= 2 * eps * direction
            down = loss()
            p += eps * direction
        numeric = (up - down) / (2 * eps)
        assert float((g * direction).sum()) == pytest.approx(float(numeric), rel=1e-4, abs=1e-7)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_nerfacc_and_dense_samplers_agree():
    """nerfacc's OccGridEstimator (CUDA) and the dense sampler composite the same field alike:
    both march the same steps from the ray's entry into the bounding sphere."""
    from nerfacc import OccGridEstimator

    def field(points, dirs, deltas):  # a soft, lumpy ball with a position-dependent colour
        r = points.norm(dim=-1) * (1 + 0.2 * torch.sin(6 * points[:, 0]))
        sigma = 30.0 * torch.sigmoid((0.5 - r) * 40)
        return 1.0 - torch.exp(-sigma * deltas), {"albedo": torch.sigmoid(points * 3)}

    cams = orbit_cameras([20.0, -15.0], [30.0, 210.0], 2.6, 40.0).to("cuda")
    origins, dirs = (t.reshape(-1, 3) for t in camera_rays(cams.c2w, cams.fovy_deg, 64, 64))
    estimator = OccGridEstimator([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0], resolution=32).cuda()
    step = 2.0 / 128
    for i in range(4):  # a few updates so the grid sees the whole ball
        estimator.update_every_n_steps(
            i * 16, lambda p: field(p, p, torch.full(p.shape[:1], step, device=p.device))[0], n=16
        )
    dense = render_rays(field, origins, dirs, radius=1.0, num_samples=128)
    marched = render_rays(field, origins, dirs, radius=1.0, num_samples=128, sampler="nerfacc", estimator=estimator)
    assert (dense.opacity - marched.opacity).abs().mean() < 0.01
    assert (dense.opacity - marched.opacity).abs().max() < 0.1
    assert (dense.values["albedo"] - marched.values["albedo"]).abs().mean() < 0.01
    assert len(marched.weights) < len(dense.weights)  # it skipped empty space
