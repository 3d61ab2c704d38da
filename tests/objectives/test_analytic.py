"""The family proven on analytic priors (reference §15): exact teacher, SDS mode seeking,
VSD/ESD sampling. Seeds fixed; step counts cut for CI."""

import pytest
import torch

from dreamer.objectives.base import TimestepSchedule
from dreamer.objectives.esd import ESD, ESDConfig
from dreamer.objectives.sds import SDS, SDSConfig
from dreamer.objectives.toy import (
    GaussianGenerator,
    GeneratorScore,
    ParticleKDE,
    covariance_error,
    mode_stats,
    run_generator,
    run_particles,
)
from dreamer.objectives.vsd import VSD, VSDConfig
from dreamer.priors.analytic import GaussianPrior, MixturePrior

SIGMA_P = torch.tensor([[1.0, 0.6], [0.6, 0.61]])


#: these loops run on tiny tensors, where thread hand-offs cost more than the arithmetic
pytestmark = pytest.mark.usefixtures("one_thread")


def mixture() -> MixturePrior:
    return MixturePrior(
        torch.tensor([0.2, 0.3, 0.5]), torch.tensor([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]]), 0.3
    )


def initial_particles(n: int) -> torch.Tensor:
    return torch.rand(n, 2, generator=torch.Generator().manual_seed(0)) * 6 - 3


def full_range() -> TimestepSchedule:
    return TimestepSchedule(t_min=0.02, t_max=0.98)


@pytest.mark.parametrize("prior", [mixture(), GaussianPrior(torch.tensor([0.5, 0.3]), SIGMA_P)])
def test_exact_noise_is_minus_sigma_times_the_autograd_score(prior):
    t = torch.tensor([10, 300, 700, 990])
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(3)) * 2
    x.requires_grad_(True)
    (score,) = torch.autograd.grad(prior.log_prob_t(x, t).sum(), x)
    sigma = (1 - prior.alphas_cumprod[t]).sqrt().unsqueeze(1)
    eps = prior.predict_noise(x.detach(), t, prior.encode_prompt(""), None, ("cond",))[0]
    torch.testing.assert_close(eps, -sigma * score, atol=1e-4, rtol=1e-4)


def test_exact_noise_is_the_denoising_regression():
    """E[eps | x_t] = eps*(x_t): the residual eps - eps*(x_t) is orthogonal to functions of x_t."""
    prior, gen = mixture(), torch.Generator().manual_seed(0)
    for step in (100, 500):
        x0 = prior.sample(100_000, gen)
        eps = torch.randn(x0.shape, generator=gen)
        t = torch.full((x0.shape[0],), step)
        x_t = prior.add_noise(x0, eps, t)
        eps_star = prior.predict_noise(x_t, t, prior.encode_prompt(""), None, ("cond",))[0]
        residual = eps - eps_star
        for f in (x_t, torch.tanh(x_t)):
            assert (residual * f).mean(0).abs().max() < 0.02
        assert (residual**2).mean() < (eps**2).mean()


def test_sds_with_small_timesteps_sends_every_particle_to_the_mode_of_its_basin():
    prior = mixture()
    sds = SDS(prior, SDSConfig(guidance_scale=1.0, timesteps=TimestepSchedule(t_min=0.02, t_max=0.2)))
    out = run_particles(sds, initial_particles(256), 3000, 0.02, torch.Generator().manual_seed(1))
    stats = mode_stats(out, prior)
    assert stats["max_distance_to_mode"] < 0.1
    assert max(stats["within_std"]) < 0.1 * 0.3


def test_sds_over_the_full_range_leaves_a_mode_empty():
    prior = mixture()
    sds = SDS(prior, SDSConfig(guidance_scale=1.0, timesteps=full_range()))
    out = run_particles(sds, initial_particles(256), 800, 0.05, torch.Generator().manual_seed(1))
    assert min(mode_stats(out, prior)["occupancy"]) == 0.0


def test_vsd_with_a_kde_fake_score_samples_the_mixture():
    prior = mixture()
    kde = ParticleKDE(bandwidth=0.1, prior=prior)
    vsd = VSD(prior, VSDConfig(guidance_scale=1.0, timesteps=full_range()), fake_score=kde)
    out = run_particles(vsd, initial_particles(256), 1500, 0.05, torch.Generator().manual_seed(1))
    stats = mode_stats(out, prior)
    assert stats["occupancy_error"] < 0.08
    for std in stats["within_std"]:
        assert 0.7 * 0.3 <= std <= 1.4 * 0.3


def _gaussian_run(objective_for) -> torch.Tensor:
    prior = GaussianPrior(torch.tensor([0.5, 0.3]), SIGMA_P)
    torch.manual_seed(0)
    gen = GaussianGenerator(2)
    run_generator(objective_for(prior, gen), gen, 600, 256, 0.01, torch.Generator().manual_seed(1))
    assert torch.allclose(gen.mu.detach(), prior.mean, atol=0.06)
    return gen.covariance()


def test_on_a_gaussian_sds_collapses_and_esd_recovers_the_covariance():
    sds = _gaussian_run(lambda p, g: SDS(p, SDSConfig(guidance_scale=1.0, timesteps=full_range())))

    def esd(lam):
        cfg = ESDConfig(guidance_scale=1.0, entropy_weight=lam, timesteps=full_range())
        return _gaussian_run(lambda p, g: ESD(p, cfg, fake_score=GeneratorScore(g, p)))

    full, half = esd(1.0), esd(0.5)
    assert sds.trace() < 1e-3
    assert covariance_error(full, SIGMA_P) < 0.1
    assert sds.trace() < half.trace() < full.trace()
