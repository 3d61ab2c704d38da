import pytest
import torch

from dreamer.cameras import orbit_cameras
from dreamer.objectives.base import TimestepSchedule, reparametrised_loss
from dreamer.objectives.sds import SDS, SDSConfig
from dreamer.priors.base import Views
from dreamer.priors.reference import ReferencePrior
from tests.helpers import coloured_box


def test_reparametrised_loss_has_gradient_g_over_batch():
    x = torch.randn(3, 4, 8, 8, requires_grad=True)
    g = torch.randn(3, 4, 8, 8)
    reparametrised_loss(x, g).backward()
    torch.testing.assert_close(x.grad, g / 3)


def test_sds_with_the_reference_prior_is_a_weighted_pull_towards_the_reference():
    """With eps_hat = (x_t - alpha r) / sigma, the noise cancels: g = w(t) alpha / sigma (x - r)."""
    prior = ReferencePrior(coloured_box(), "reference:box", torch.device("cpu"))
    sds = SDS(prior, SDSConfig(guidance_scale=7.5, weighting="sds"))
    views = Views(orbit_cameras([0.0, 20.0], [30.0, 200.0]), torch.full((2, 3), 0.5))
    images = torch.rand(2, 32, 32, 3, requires_grad=True)
    out = sds(
        images, views, prior.encode_prompt("x"), step=0, total_steps=10, generator=torch.Generator().manual_seed(1)
    )
    out.loss.backward()
    alpha, sigma = prior.alpha_sigma(out.t)
    ref = prior.clean_images(views, 32, 32)
    # d loss / d image = d loss / dx * 2 (x = 2 img - 1); g = sigma^2 * alpha / sigma * 2 (img - ref)
    expected = (sigma * alpha).view(-1, 1, 1, 1) * 2 * (images.detach() - ref) * 2 / 2
    torch.testing.assert_close(images.grad, expected, atol=1e-4, rtol=1e-4)


def test_gradient_descent_with_sds_reproduces_the_reference_image():
    prior = ReferencePrior(coloured_box(), "reference:box", torch.device("cpu"))
    sds = SDS(prior, SDSConfig(guidance_scale=1.0))
    views = Views(orbit_cameras(0.0, 30.0), torch.zeros(1, 3))
    target = prior.clean_images(views, 16, 16)
    logits = torch.zeros(1, 16, 16, 3, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.05)
    gen = torch.Generator().manual_seed(0)
    before = (torch.sigmoid(logits) - target).abs().mean().item()
    for step in range(300):
        out = sds(torch.sigmoid(logits), views, prior.encode_prompt(""), step, 300, gen)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    after = (torch.sigmoid(logits) - target).abs().mean().item()
    assert after < 0.1 * before


def test_timestep_schedules():
    gen = torch.Generator().manual_seed(0)
    sched = TimestepSchedule(t_min=0.02, t_max={"start": 10, "end": 10, "v0": 0.98, "v1": 0.5})
    early = sched.sample(4000, 0, 100, 1000, gen)
    late = sched.sample(4000, 50, 100, 1000, gen)
    assert early.min() >= 20 and early.max() < 980 and early.max() > 900
    assert late.max() < 500
    sqrt = TimestepSchedule(t_min=0.2, t_max=0.8, anneal="sqrt")
    assert sqrt.sample(1, 0, 100, 1000, gen).item() == 799
    assert sqrt.sample(1, 100, 100, 1000, gen).item() == 200


def test_a_bad_timestep_range_is_rejected():
    with pytest.raises(ValueError):
        TimestepSchedule(t_min=0.9, t_max=0.5)
