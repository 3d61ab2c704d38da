"""Tests for renderers.gaussians: analytic footprints, ordering, compositing, gradients, parity."""

from __future__ import annotations

import math

import pytest
import torch

from renderers.gaussians import rasterize_gaussians

F = 10.0  # focal length in pixels for the 8x8 test camera


def _cam(C: int = 1, size: int = 8, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Identity world-to-camera (camera at the origin looking down +z), centred intrinsics."""
    vm = torch.eye(4, dtype=dtype).expand(C, 4, 4).clone()
    K = torch.tensor([[F, 0, size / 2], [0, F, size / 2], [0, 0, 1]], dtype=dtype).expand(C, 3, 3).clone()
    return vm, K


def _one(means, scale=0.2, opacity=0.8, color=(1.0, 1.0, 1.0), dtype=torch.float32):
    n = len(means)
    return dict(
        means=torch.tensor(means, dtype=dtype),
        quats=torch.tensor([[1.0, 0, 0, 0]] * n, dtype=dtype),
        scales=torch.full((n, 3), scale, dtype=dtype),
        opacities=torch.full((n,), opacity, dtype=dtype),
        colors=torch.tensor([color] * n, dtype=dtype) if isinstance(color[0], float) else torch.tensor(color),
    )


def test_isotropic_footprint_matches_analytic() -> None:
    z, s, o = 2.0, 0.2, 0.8
    # centre at pixel (row 3, col 4)'s centre: u = F x / z + 4 = 4.5, v = F y / z + 4 = 3.5
    g = _one([[0.5 * z / F, -0.5 * z / F, z]], scale=s, opacity=o)
    vm, K = _cam()
    out = rasterize_gaussians(**g, viewmats=vm, Ks=K, width=8, height=8, backend="torch")
    assert out.means2d[0, 0].tolist() == pytest.approx([4.5, 3.5], abs=1e-5)
    # EWA by hand: J = [[F/z, 0, -F x/z²], [0, F/z, -F y/z²]], Σ2d = s² J Jᵀ + 0.3 I
    x, y = 0.5 * z / F, -0.5 * z / F
    J = torch.tensor([[F / z, 0, -F * x / z**2], [0, F / z, -F * y / z**2]], dtype=torch.float64)
    cov = s**2 * J @ J.T + 0.3 * torch.eye(2, dtype=torch.float64)
    conic = torch.linalg.inv(cov)
    for row, col in [(3, 4), (3, 6), (5, 5), (0, 4), (1, 2)]:
        d = torch.tensor([col + 0.5 - 4.5, row + 0.5 - 3.5], dtype=torch.float64)
        expect = o * math.exp(-0.5 * float(d @ conic @ d))
        assert out.alpha[0, row, col, 0].item() == pytest.approx(expect, rel=1e-4, abs=1e-6)
        assert out.rgb[0, row, col, 0].item() == pytest.approx(expect, rel=1e-4, abs=1e-6)
    var = float(cov[0, 0])
    assert out.radii[0, 0].item() == math.ceil(min(3.33, math.sqrt(2 * math.log(o * 255))) * math.sqrt(var))
    assert (
        out.rgb.shape == (1, 8, 8, 3) and out.depth.shape == (1, 8, 8, 1) and out.radii.dtype == torch.int32
    )


def test_front_to_back_order_and_background() -> None:
    # blue (far) listed first, red (near) second: the near one must win regardless of order.
    g = _one([[0, 0, 3.0], [0, 0, 2.0]], scale=0.5, opacity=0.99, color=[[0.0, 0, 1], [1.0, 0, 0]])
    vm, K = _cam()
    bg = torch.tensor([[0.0, 1.0, 0.0]])
    out = rasterize_gaussians(**g, viewmats=vm, Ks=K, width=8, height=8, backgrounds=bg, backend="torch")
    centre = out.rgb[0, 3, 3]
    assert centre[0] > 0.95 and centre[2] < 0.05 and centre[1] < 0.01
    # background: rgb = accumulated + (1 - alpha) * bg, channel by channel
    assert torch.allclose(out.rgb[..., 1], (1 - out.alpha[..., 0]) * 1.0, atol=1e-6)
    assert out.alpha.min() >= 0 and out.alpha.max() <= 1


def test_alpha_range_and_arbitrary_channels() -> None:
    torch.manual_seed(0)
    n = 50
    means = torch.randn(n, 3) * 0.3 + torch.tensor([0, 0, 2.5])
    vm, K = _cam(C=2, size=16)
    K[:, :2, 2] = 8.0
    out = rasterize_gaussians(
        means, torch.randn(n, 4), torch.rand(n, 3) * 0.1 + 0.02, torch.rand(n) * 0.99 + 0.005,
        torch.rand(n, 5), vm, K, 16, 16, backgrounds=torch.rand(2, 5), backend="torch",
    )  # fmt: skip
    assert out.rgb.shape == (2, 16, 16, 5)
    assert out.alpha.min() >= 0 and out.alpha.max() <= 1
    assert out.alpha.max() > 0.5  # something was drawn


def test_depth_of_single_opaque_gaussian_is_camera_z() -> None:
    g = _one([[0.1, -0.05, 2.5]], scale=0.3, opacity=0.99)
    vm, K = _cam()
    vm[0, :3, 3] = torch.tensor([0.0, 0.0, 0.5])  # shifts camera z by 0.5
    out = rasterize_gaussians(**g, viewmats=vm, Ks=K, width=8, height=8, backend="torch")
    hit = out.alpha[..., 0] > 1e-6
    assert hit.sum() > 10
    assert torch.allclose(out.depth[..., 0][hit], torch.tensor(3.0), atol=1e-5)
    assert (out.depth[..., 0][~hit] == 0).all()


def test_behind_camera_and_offscreen_are_culled() -> None:
    g = _one([[0, 0, -2.0], [0, 0, 0.005], [50.0, 0, 2.0], [0, 0, 2.0]])
    vm, K = _cam()
    out = rasterize_gaussians(**g, viewmats=vm, Ks=K, width=8, height=8, backend="torch")
    assert out.radii[0].tolist()[:3] == [0, 0, 0] and out.radii[0, 3] > 0
    g = _one([[0, 0, -2.0]])
    out = rasterize_gaussians(**g, viewmats=vm, Ks=K, width=8, height=8, backend="torch")
    assert out.alpha.abs().max() == 0 and out.rgb.abs().max() == 0


def test_means2d_grad_is_retained() -> None:
    g = _one([[0.05, 0.02, 2.0]])
    g["means"].requires_grad_(True)
    vm, K = _cam()
    out = rasterize_gaussians(**g, viewmats=vm, Ks=K, width=8, height=8, backend="torch")
    (out.rgb[..., 0] * torch.arange(8.0)).sum().backward()
    assert out.means2d.grad is not None and out.means2d.grad.shape == (1, 1, 2)
    assert out.means2d.grad[0, 0, 0] > 0  # moving right brightens the weighted-right image


def test_gradcheck_float64() -> None:
    dt = torch.float64
    means = torch.tensor([[0.05, 0.03, 2.0], [-0.1, 0.08, 2.6], [0.12, -0.1, 3.1]], dtype=dt)
    quats = torch.tensor([[1.0, 0.1, -0.2, 0.05], [0.9, 0.3, 0.1, 0.0], [1.0, 0, 0.2, 0.1]], dtype=dt)
    scales = torch.tensor([[0.25, 0.2, 0.3], [0.3, 0.22, 0.25], [0.35, 0.3, 0.28]], dtype=dt)
    opac = torch.tensor([0.6, 0.7, 0.5], dtype=dt)
    colors = torch.tensor([[0.9, 0.2, 0.1], [0.1, 0.8, 0.3], [0.2, 0.3, 0.9]], dtype=dt)
    bg = torch.tensor([[0.3, 0.6, 0.9]], dtype=dt)
    vm, K = _cam(dtype=dt)
    vm[0, :3, :3] = torch.linalg.matrix_exp(
        torch.tensor([[0, -0.1, 0.05], [0.1, 0, -0.08], [-0.05, 0.08, 0]])
    )
    vm = vm.to(dt)

    def f(m, q, s, o, c, b):
        r = rasterize_gaussians(m, q, s, o, c, vm, K, 8, 8, backgrounds=b, backend="torch")
        return r.rgb, r.alpha, r.depth

    # smooth regime: no α hits 0.999 and no pair sits at the 1/255 cutoff
    alpha_peak = f(means, quats, scales, opac, colors, bg)[1].max()
    assert alpha_peak < 0.99
    inputs = [t.clone().requires_grad_(True) for t in (means, quats, scales, opac, colors, bg)]
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


def _orbit_scene(n: int, C: int, size: int, device: str):
    """A deterministic blob of Gaussians seen by C cameras on a ring (OpenCV viewmats)."""
    g = torch.Generator().manual_seed(3)
    means = (torch.randn(n, 3, generator=g) * 0.25).clamp(-0.6, 0.6)
    quats = torch.randn(n, 4, generator=g)
    scales = torch.rand(n, 3, generator=g) * 0.04 + 0.01
    opac = torch.rand(n, generator=g) * 0.9 + 0.05
    colors = torch.rand(n, 3, generator=g)
    vms = []
    for i in range(C):
        az = 2 * math.pi * i / C
        eye = torch.tensor([2.5 * math.sin(az), 0.4, 2.5 * math.cos(az)])
        fwd = -eye / eye.norm()
        right = torch.linalg.cross(fwd, torch.tensor([0.0, 1.0, 0.0]))
        right = right / right.norm()
        up = torch.linalg.cross(right, fwd)
        R = torch.stack([right, -up, fwd])
        vm = torch.eye(4)
        vm[:3, :3], vm[:3, 3] = R, -R @ eye
        vms.append(vm)
    f = 0.5 * size / math.tan(math.radians(22.5))
    K = torch.tensor([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1.0]]).expand(C, 3, 3).clone()
    bg = torch.rand(C, 3, generator=g)
    return [t.to(device) for t in (means, quats, scales, opac, colors, torch.stack(vms), K, bg)]


def test_orbit_scene_renders_object_in_every_view() -> None:
    m, q, s, o, c, vm, K, bg = _orbit_scene(500, 3, 32, "cpu")
    out = rasterize_gaussians(m, q, s, o, c, vm, K, 32, 32, backgrounds=bg, backend="torch")
    for i in range(3):
        assert out.alpha[i, 12:20, 12:20].mean() > 0.5  # object at the centre of every view
        assert out.alpha[i, :2].mean() < 0.05


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gsplat_matches_torch_backend() -> None:
    outs, grads = [], []
    for backend, dev in [("torch", "cpu"), ("gsplat", "cuda")]:
        m, q, s, o, c, vm, K, bg = _orbit_scene(2000, 2, 64, dev)
        m.requires_grad_(True)
        c.requires_grad_(True)
        r = rasterize_gaussians(m, q, s, o, c, vm, K, 64, 64, backgrounds=bg, backend=backend)
        w = torch.linspace(0, 1, 64 * 64 * 3, device=dev).reshape(64, 64, 3)
        ((r.rgb * w).sum() + r.depth.sum() * 0.1).backward()
        outs.append([t.detach().cpu() for t in (r.rgb, r.alpha, r.depth, r.radii)])
        grads.append([m.grad.cpu(), c.grad.cpu()])
    (rgb0, a0, d0, r0), (rgb1, a1, d1, r1) = outs
    assert (r0 > 0).eq(r1 > 0).float().mean() > 0.999
    assert (rgb0 - rgb1).abs().max() < 2e-3
    assert (a0 - a1).abs().max() < 2e-3
    solid = (a0 > 0.5) & (a1 > 0.5)
    assert (d0 - d1)[solid].abs().max() < 1e-2
    for g0, g1 in zip(*grads):
        cos = torch.nn.functional.cosine_similarity(g0.flatten(), g1.flatten(), dim=0)
        assert cos > 0.99 and (g0.norm() / g1.norm() - 1).abs() < 0.05
