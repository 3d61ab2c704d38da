"""Plumbing of the score-distillation family and a 5-step run of every objective on the tiny SD."""

import pytest
import torch
from pydantic import TypeAdapter

from dreamer.cameras import orbit_cameras
from dreamer.objectives.asd import ASD, ASDConfig
from dreamer.objectives.base import reparametrised_loss
from dreamer.objectives.bsd import pareto_mix
from dreamer.objectives.common import guided_noise
from dreamer.objectives.dds import DDS, DDSConfig
from dreamer.objectives.perp_neg import PerpNegConfig, perp_neg_combine, perpendicular
from dreamer.objectives.select import OBJECTIVES, ObjectiveConfig, build_objective
from dreamer.priors.analytic import MixturePrior
from dreamer.priors.base import Views
from dreamer.priors.diffusers_prior import DiffusersPrior
from tests.objectives.conftest import tiny_sd_prior

pytestmark = pytest.mark.usefixtures("offline_one_thread")


@pytest.fixture(scope="module")
def sd(tmp_path_factory: pytest.TempPathFactory) -> DiffusersPrior:
    return tiny_sd_prior(tmp_path_factory, "family", keep_text_encoder=True)


def views(n: int = 2) -> Views:
    return Views(orbit_cameras([10.0] * n, [30.0 + 100 * i for i in range(n)]), torch.full((n, 3), 0.5))


def test_reparametrised_loss_has_gradient_g_over_batch_with_a_sum_reduction():
    x = torch.randn(4, 2, requires_grad=True)
    g = torch.randn(4, 2)
    reparametrised_loss(x, g).backward()
    torch.testing.assert_close(x.grad, g / 4)


def test_the_two_cfg_conventions_agree_with_s_equal_one_plus_omega():
    prior = MixturePrior(torch.tensor([0.5, 0.5]), torch.tensor([[-1.0, 0.0], [1.0, 0.0]]), 0.3)
    x_t, t, prompt = torch.randn(5, 2), torch.full((5,), 400), prior.encode_prompt("")
    omega = 3.0
    cond, uncond = prior.predict_noise(x_t, t, prompt, None)
    dreamfusion = cond + omega * (cond - uncond)
    torch.testing.assert_close(guided_noise(prior, x_t, t, prompt, None, 1.0 + omega), dreamfusion)


def test_v_prediction_converts_to_epsilon():
    """For x_t = alpha x + sigma eps and v = alpha eps - sigma x: eps = sigma x_t + alpha v."""
    alpha, sigma = torch.tensor(0.6), torch.tensor(0.8)
    x, eps = torch.randn(3, 4), torch.randn(3, 4)
    x_t, v = alpha * x + sigma * eps, alpha * eps - sigma * x
    torch.testing.assert_close(sigma * x_t + alpha * v, eps)


def test_bsd_pareto_mix_is_the_min_norm_point_of_the_segment():
    g_c, g_d = torch.randn(3, 8), torch.randn(3, 8)
    a, mixed = pareto_mix(g_c, g_d)
    for frac in torch.linspace(0, 1, 21):
        other = frac * g_c + (1 - frac) * g_d
        assert (mixed.norm(dim=1) <= other.norm(dim=1) + 1e-5).all()
    assert ((a >= 0) & (a <= 1)).all()


def test_perp_neg_removes_only_the_component_along_the_positive_direction():
    a, b = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    assert (perpendicular(a, b).flatten(1) * b.flatten(1)).sum(1).abs().max() < 1e-4
    eps_u, eps_pos = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    plain = perp_neg_combine(eps_u, eps_pos, torch.randn(2, 2, 3, 4, 4), torch.zeros(2, 2), 7.5)
    torch.testing.assert_close(plain, eps_u + 7.5 * (eps_pos - eps_u))


def test_asd_with_no_shift_and_cfg_one_is_a_zero_update(sd):
    asd = ASD(sd, ASDConfig(guidance_scale=1.0, shift_ratio=0.0))
    images = torch.rand(2, 16, 16, 3, requires_grad=True)
    out = asd(images, views(), sd.encode_prompt("a corgi"), 0, 10, torch.Generator().manual_seed(0))
    out.loss.backward()
    assert out.grad_norm == 0.0 and images.grad.abs().max() == 0.0


def test_dds_with_identical_source_and_target_is_a_zero_update(sd):
    images = torch.rand(2, 16, 16, 3)
    dds = DDS(sd, DDSConfig(source_prompt="a corgi"), source=lambda v, h, w: images)
    target = images.clone().requires_grad_(True)
    out = dds(target, views(), sd.encode_prompt("a corgi"), 0, 10, torch.Generator().manual_seed(0))
    out.loss.backward()
    assert out.grad_norm == 0.0 and target.grad.abs().max() == 0.0


def test_every_objective_validates_from_preset_data_and_is_in_the_table():
    adapter = TypeAdapter(ObjectiveConfig)
    for name in OBJECTIVES:
        assert adapter.validate_python({"name": name}).name == name
    assert adapter.validate_python({"name": "esd", "entropy_weight": 1.0}).entropy_weight == 1.0
    with pytest.raises(ValueError):
        adapter.validate_python({"name": "vsd", "guidance_scal": 7.5})


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_every_objective_runs_five_steps_on_the_tiny_sd(sd, name):
    cfg = TypeAdapter(ObjectiveConfig).validate_python({"name": name})
    if name in ("asd", "ism"):  # exercise Perp-Neg's 4-branch prior call as well
        cfg = cfg.model_copy(update={"perp_neg": PerpNegConfig(enabled=True)})
    objective = build_objective(sd, cfg)
    if name == "dds":
        objective.set_source(lambda v, h, w: torch.full((len(v.cameras), h, w, 3), 0.3))
    logits = torch.zeros(1, 16, 16, 3, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.05)
    prompt, gen, v = sd.encode_prompt("a corgi", "blurry"), torch.Generator().manual_seed(0), views(1)
    state_before = {k: v.clone() for k, v in objective.state_dict().get("lora", {}).items()}
    for step in range(5):
        out = objective(torch.sigmoid(logits), v, prompt, step, 5, gen)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        assert torch.isfinite(logits.grad).all() and out.grad_norm == out.grad_norm
    assert logits.grad.abs().sum() > 0
    if state_before:  # VSD, ESD and DSD trained their LoRA
        after = objective.state_dict()["lora"]
        assert any(not torch.equal(state_before[k], after[k]) for k in after)


def test_dds_without_a_source_is_a_clear_error(sd):
    with pytest.raises(Exception, match="set_source"):
        DDS(sd, DDSConfig())(torch.rand(1, 8, 8, 3), views(1), sd.encode_prompt("x"), 0, 1, torch.Generator())
