"""The LoRA fake score of VSD/DSD/ESD on a tiny v-prediction SD: teacher untouched, training,
camera conditioning and checkpoints."""

import pytest
import torch

from dreamer.cameras import orbit_cameras
from dreamer.objectives.lora import LoRAConfig, LoRAFakeScore
from dreamer.objectives.vsd import VSD, VSDConfig
from dreamer.priors.base import Views
from dreamer.priors.diffusers_prior import DiffusersPrior
from tests.objectives.conftest import tiny_sd_prior

pytestmark = pytest.mark.usefixtures("offline_one_thread")


@pytest.fixture(scope="module")
def sd_v(tmp_path_factory: pytest.TempPathFactory) -> DiffusersPrior:
    return tiny_sd_prior(tmp_path_factory, "lora", make=dict(prediction_type="v_prediction", seed=1))


def _batch(prior: DiffusersPrior):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 8, generator=gen)
    t = torch.tensor([200, 700])
    views = Views(orbit_cameras([10.0, 20.0], [0.0, 150.0]), torch.ones(2, 3))
    return x, t, views, prior.encode_prompt("a corgi")


def test_at_init_the_fake_score_is_the_teacher_in_epsilon_even_for_v_prediction(sd_v):
    fake = LoRAFakeScore(sd_v, LoRAConfig())
    x, t, views, prompt = _batch(sd_v)
    teacher = sd_v.predict_noise(x, t, prompt, views, ("plain",))[0]
    both = fake.noise(x, t, prompt, views, ("camera", "nocamera"))
    torch.testing.assert_close(both[0], teacher, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(both[1], teacher, atol=1e-5, rtol=1e-5)


def test_training_moves_the_lora_and_camera_but_never_the_teacher(sd_v):
    fake = LoRAFakeScore(sd_v, LoRAConfig(lr=1e-2, updates_per_step=3, camera_dropout=0.5))
    x, t, views, prompt = _batch(sd_v)
    teacher_before = sd_v.predict_noise(x, t, prompt, views, ("cond", "plain"))
    fake.train(x, views, prompt, torch.Generator().manual_seed(1))
    torch.testing.assert_close(sd_v.predict_noise(x, t, prompt, views, ("cond", "plain")), teacher_before)
    cam, nocam = fake.noise(x, t, prompt, views, ("camera", "nocamera"))
    assert not torch.allclose(cam, teacher_before[1], atol=1e-6)
    assert not torch.allclose(cam, nocam, atol=1e-7)  # the camera MLP learned something
    assert all(p.grad is not None for p in fake.camera_mlp.parameters())


def test_state_dict_round_trip_restores_the_fake_score(sd_v):
    cfg = VSDConfig(lora=LoRAConfig(lr=1e-2))
    first = VSD(sd_v, cfg)
    x, t, views, prompt = _batch(sd_v)
    first.fake.train(x, views, prompt, torch.Generator().manual_seed(2))
    state = first.state_dict()
    assert set(state) == {"lora", "camera", "optimizer"} and state["optimizer"]["state"]
    second = VSD(sd_v, cfg)
    second.load_state_dict(state)
    torch.testing.assert_close(
        second.fake.noise(x, t, prompt, views, ("camera",)),
        first.fake.noise(x, t, prompt, views, ("camera",)),
    )


def test_a_camera_conditioned_prior_gives_its_lora_unet_the_same_camera_features(tmp_path_factory):
    make = dict(prediction_type="v_prediction", camera_conditioned=True)
    prior = tiny_sd_prior(tmp_path_factory, "lora_camera", make=make)
    assert prior.camera_conditioned
    fake = LoRAFakeScore(prior, LoRAConfig(lr=1e-2))
    x, t, views, prompt = _batch(prior)
    teacher = prior.predict_noise(x, t, prompt, views, ("plain",))[0]
    both = fake.noise(x, t, prompt, views, ("camera", "nocamera"))
    torch.testing.assert_close(both[0], teacher, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(both[1], teacher, atol=1e-5, rtol=1e-5)
    assert fake.train(x, views, prompt, torch.Generator().manual_seed(1)) > 0.0
