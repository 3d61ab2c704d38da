import torch

from dreamer.cameras import orbit_cameras
from dreamer.representations.densify import Densifier, DensifyConfig
from dreamer.representations.gaussians import SH_C0, Gaussians
from dreamer.stages.coarse import GaussianLearningRates, make_optimizer


def _gaussians(n=200, seed=0):
    return Gaussians.blob(n, (0.5, 0.4, 0.3), torch.Generator().manual_seed(seed), opacity=0.3)


def test_blob_fills_its_ellipsoid():
    g = _gaussians(2000)
    scaled = g.means.detach() / torch.tensor([0.5, 0.4, 0.3])
    assert scaled.norm(dim=-1).max() <= 1.0 + 1e-5
    assert torch.allclose(g.opacities, torch.full((2000,), 0.3), atol=1e-5)


def test_ply_round_trip_in_the_3dgs_layout(tmp_path):
    g = _gaussians()
    with torch.no_grad():
        g.quats.copy_(torch.nn.functional.normalize(torch.randn(len(g), 4), dim=-1))
    path = tmp_path / "gaussians.ply"
    g.save_ply(path)
    header = path.read_bytes().split(b"end_header\n")[0].decode()
    for name in ("x", "f_dc_0", "f_rest_44", "opacity", "scale_2", "rot_3"):
        assert f"property float {name}\n" in header
    back = Gaussians.load_ply(path)
    torch.testing.assert_close(back.means, g.means)
    torch.testing.assert_close(back.scales, g.scales)
    torch.testing.assert_close(back.opacities, g.opacities, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(back.colors, g.colors, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(back.normalised_quats, g.normalised_quats)
    # colours are stored as SH DC coefficients, as viewers expect: rgb = 0.5 + C0 * f_dc
    raw = torch.frombuffer(bytearray(path.read_bytes().split(b"end_header\n")[1]), dtype=torch.float32)
    f_dc0 = raw.view(len(g), -1)[:, 6]
    torch.testing.assert_close(0.5 + SH_C0 * f_dc0, g.colors[:, 0].detach(), atol=1e-5, rtol=1e-5)


def test_render_shapes_and_background():
    g = _gaussians()
    cams = orbit_cameras([0.0, 30.0], [0.0, 90.0])
    out = g.render(cams, 24, 32, torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
    assert out.rgb.shape == (2, 24, 32, 3) and out.alpha.shape == (2, 24, 32, 1)
    torch.testing.assert_close(out.rgb[0, 0, 0], torch.tensor([1.0, 0.0, 0.0]))  # empty corner shows bg


def test_densify_grows_hot_gaussians_prunes_faint_ones_and_keeps_adam_in_step():
    g = _gaussians(100)
    with torch.no_grad():
        g.opacity_logits[:10] = -10.0  # faint: pruned
        g.log_scales[50:60] = torch.log(torch.tensor(0.2))  # large and hot: split
    opt = make_optimizer(g, GaussianLearningRates())
    cams = orbit_cameras([0.0, 20.0], [0.0, 120.0])
    out = g.render(cams, 32, 32, torch.zeros(2, 3))
    out.rgb.sum().backward()
    opt.step()
    densifier = Densifier(DensifyConfig(start=1, stop=10, every=1, grad_threshold=0.0, max_scale=1.0), g)
    densifier.accumulate(g, 32, 32)
    visible = int((g.last_radii > 0).any(0).sum())
    n_before = len(g)
    assert densifier.step(1, g, opt, torch.Generator().manual_seed(0))
    assert len(g) != n_before and len(g) > visible - 10
    for group in opt.param_groups:
        param = group["params"][0]
        assert param.shape[0] == len(g)
        state = opt.state[param]
        assert state["exp_avg"].shape == param.shape and state["exp_avg_sq"].shape == param.shape
    assert (g.opacities > 0.01).all()
    # another optimiser step runs on the edited parameters
    g.render(cams, 32, 32, torch.zeros(2, 3)).rgb.sum().backward()
    opt.step()
