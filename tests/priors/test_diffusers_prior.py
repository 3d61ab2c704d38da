"""DiffusersPrior on tiny random models: loading, shapes, CFG batching, v/x0 conversion, caching,
camera conditioning, errors."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import json
import shutil
import time
from pathlib import Path

import pytest
import torch

import dreamer.priors.diffusers_prior as dp
from dreamer.cameras import orbit_cameras
from dreamer.errors import DreamerError
from dreamer.priors.base import Views
from dreamer.priors.camera_condition import (
    CAMERA_CONDITION_KEY,
    CAMERA_CONDITION_LAYOUT,
    FIRST_LAYOUT,
    camera_features,
    feature_count,
)
from dreamer.priors.diffusers_prior import DiffusersPrior, load_diffusers_prior
from tests.tiny_models import PIXEL_SIZE, SD_LATENT_SIZE, SD_VAE_SCALE, make_tiny_pixel_unet, make_tiny_sd

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def sd_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_sd(tmp_path_factory.mktemp("tiny_sd"))


@pytest.fixture(scope="module")
def sd_v_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_sd(tmp_path_factory.mktemp("tiny_sd_v"), prediction_type="v_prediction", seed=1)


@pytest.fixture(scope="module")
def pixel_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_pixel_unet(tmp_path_factory.mktemp("tiny_pixel"))


@pytest.fixture(scope="module")
def camera_pixel_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_pixel_unet(tmp_path_factory.mktemp("tiny_pixel_camera"), camera_conditioned=True)


@pytest.fixture
def sd(sd_path: Path, tmp_path: Path) -> DiffusersPrior:
    return load_diffusers_prior(str(sd_path), CPU, cache_dir=tmp_path / "cache")


def _views(azimuths: list[float], elevations: list[float] | None = None) -> Views:
    cams = orbit_cameras(elevations or [0.0] * len(azimuths), azimuths)
    return Views(cameras=cams, background=torch.ones(len(azimuths), 3))


def _raw_unet(prior: DiffusersPrior, x_t: torch.Tensor, t: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return prior.unet(x_t, t, encoder_hidden_states=emb, return_dict=False)[0].float()


def test_load_and_shapes(sd: DiffusersPrior) -> None:
    assert (
        sd.is_latent and sd.sample_size == SD_LATENT_SIZE and sd.image_size == SD_LATENT_SIZE * SD_VAE_SCALE
    )
    assert sd.dtype == torch.float32 and sd.prediction_type == "epsilon"
    assert isinstance(sd.revision, str) and len(sd.revision) == 12
    assert not any(p.requires_grad for m in (sd.unet, sd.vae) for p in m.parameters())
    assert sd.alphas_cumprod.shape == (1000,) and sd.alphas_cumprod.dtype == torch.float32

    z = sd.encode(torch.rand(2, 40, 40, 3))
    assert z.shape == (2, 4, SD_LATENT_SIZE, SD_LATENT_SIZE) and z.dtype == torch.float32
    img = sd.decode(z)
    assert img.shape == (2, sd.image_size, sd.image_size, 3) and img.dtype == torch.float32
    assert 0.0 <= img.min() and img.max() <= 1.0

    prompt = sd.encode_prompt("a corgi", "blurry")
    assert set(prompt.embeddings) == {"front", "side", "back", "overhead", "plain", "uncond"}
    assert all(e.shape == (77, 16) for e in prompt.embeddings.values())
    eps = sd.predict_noise(
        z, torch.tensor([20, 700]), prompt, _views([0.0, 90.0]), ("cond", "uncond", "plain")
    )
    assert eps.shape == (3, 2, 4, SD_LATENT_SIZE, SD_LATENT_SIZE) and eps.dtype == torch.float32
    assert sd.describe()["space"] == "latent"


@pytest.mark.parametrize("kind", ["latent", "pixel"])
def test_encode_keeps_gradients(kind: str, sd: DiffusersPrior, pixel_path: Path, tmp_path: Path) -> None:
    prior = sd if kind == "latent" else load_diffusers_prior(str(pixel_path), CPU, cache_dir=tmp_path)
    images = torch.rand(2, 24, 24, 3, requires_grad=True)
    prior.encode(images).square().sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_pixel_prior(pixel_path: Path, tmp_path: Path) -> None:
    prior = load_diffusers_prior(str(pixel_path), CPU, cache_dir=tmp_path)
    assert not prior.is_latent and prior.sample_size == PIXEL_SIZE and prior.image_size == PIXEL_SIZE
    img = torch.rand(3, PIXEL_SIZE, PIXEL_SIZE, 3)
    x = prior.encode(img)
    assert x.shape == (3, 3, PIXEL_SIZE, PIXEL_SIZE) and x.min() >= -1.0 and x.max() <= 1.0
    torch.testing.assert_close(prior.decode(x), img)
    prompt = prior.encode_prompt("a cat")
    eps = prior.predict_noise(x, torch.tensor([5, 50, 500]), prompt, _views([0.0, 180.0, 90.0]))
    assert eps.shape == (2, 3, 3, PIXEL_SIZE, PIXEL_SIZE)
    assert prior.judges_normal_maps  # the default: its folder says nothing otherwise
    # a render larger than the model is area-filtered, not point-sampled: one-pixel stripes become grey
    stripes = (torch.arange(4 * PIXEL_SIZE) % 2).float().view(1, 1, -1, 1).expand(1, 4 * PIXEL_SIZE, -1, 3)
    grey = prior.decode(prior.encode(stripes))
    assert (grey[:, :, 1:-1] - 0.5).abs().max() < 0.05, grey[0, 0, :, 0]


def test_one_unet_call_matches_separate_calls(sd: DiffusersPrior) -> None:
    prompt = sd.encode_prompt("a corgi", "blurry")
    views = _views([0.0, 170.0, 60.0])
    labels = views.cameras.view_labels()
    x_t = torch.randn(3, 4, SD_LATENT_SIZE, SD_LATENT_SIZE, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([30, 400, 900])
    branches = ("cond", "uncond", "plain")

    calls: list[int] = []
    handle = sd.unet.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    try:
        eps = sd.predict_noise(x_t, t, prompt, views, branches)
    finally:
        handle.remove()
    assert calls == [9]  # one forward on K * B samples
    for k, branch in enumerate(branches):
        expected = _raw_unet(sd, x_t, t, prompt.branch(branch, labels))
        torch.testing.assert_close(eps[k], expected, atol=1e-5, rtol=1e-5)


def test_view_dependent_prompts(sd: DiffusersPrior) -> None:
    prompt = sd.encode_prompt("a corgi")
    assert not torch.equal(prompt.embeddings["front"], prompt.embeddings["back"])
    views = _views([10.0, 175.0, 0.0], elevations=[0.0, 0.0, 75.0])
    assert views.cameras.view_labels() == ["front", "back", "overhead"]
    x = torch.randn(1, 4, SD_LATENT_SIZE, SD_LATENT_SIZE).expand(3, -1, -1, -1)
    t = torch.tensor([300, 300, 300])
    eps = sd.predict_noise(x, t, prompt, views, ("cond",))[0]
    assert (eps[0] - eps[1]).abs().max() > 1e-4  # same input, front vs back text
    for i, label in enumerate(["front", "back", "overhead"]):
        expected = _raw_unet(sd, x[i : i + 1], t[i : i + 1], prompt.embeddings[label][None])
        torch.testing.assert_close(eps[i : i + 1], expected, atol=1e-5, rtol=1e-5)


def test_camera_conditioned_model_hears_the_camera_and_the_shading(
    camera_pixel_path: Path, pixel_path: Path, tmp_path: Path
) -> None:
    prior = load_diffusers_prior(str(camera_pixel_path), CPU, cache_dir=tmp_path)
    assert prior.camera_conditioned and prior.describe()["camera_conditioned"] is True
    plain = load_diffusers_prior(str(pixel_path), CPU, cache_dir=tmp_path)  # no key: text only, as SD
    assert not plain.camera_conditioned and plain.describe()["camera_conditioned"] is False
    assert plain.unet_condition(_views([0.0, 90.0]), 2) == {}

    prompt = prior.encode_prompt("a cat")
    x_t = torch.randn(2, 3, PIXEL_SIZE, PIXEL_SIZE, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([300, 600])
    views = _views([10.0, -30.0], elevations=[5.0, 20.0])
    turned = _views([-30.0, 10.0], elevations=[5.0, 20.0])
    assert views.cameras.view_labels() == turned.cameras.view_labels() == ["front", "front"]  # same text
    light = torch.nn.functional.normalize(views.cameras.positions, dim=-1)
    shaded = Views(views.cameras, views.background, shading="lambertian", light_dirs=light)

    calls: list[int] = []
    handle = prior.unet.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    try:
        eps = prior.predict_noise(x_t, t, prompt, views, ("cond", "uncond", "plain"))
    finally:
        handle.remove()
    assert calls == [6]  # still one call, the camera features stacked like the branches
    labels = prior.unet_condition(views, 3)["class_labels"]
    assert labels.shape == (6, feature_count()) and labels[:, -1].eq(1.0).all()  # albedo renders are flat
    assert prior.unet_condition(shaded)["class_labels"][:, -1].eq(0.0).all()
    emb, features = prompt.branch("cond", ["front", "front"]), camera_features(views.cameras, flat=True)
    with torch.no_grad():
        expected = prior.unet(x_t, t, encoder_hidden_states=emb, class_labels=features).sample
    torch.testing.assert_close(eps[0], expected, atol=1e-5, rtol=1e-5)

    for other in (turned, shaded):  # only the camera, or only the shading, changes
        eps_other = prior.predict_noise(x_t, t, prompt, other, ("cond", "uncond", "plain"))
        assert (eps_other - eps).abs().amax(dim=(2, 3, 4)).min() > 1e-4


def test_camera_condition_values_are_checked(camera_pixel_path: Path, pixel_path: Path, tmp_path: Path) -> None:
    unknown = shutil.copytree(camera_pixel_path, tmp_path / "unknown")
    index = json.loads((unknown / "model_index.json").read_text())
    index[CAMERA_CONDITION_KEY] = "azimuth-elevation-flat/9"
    (unknown / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(DreamerError, match="unknown camera conditioning 'azimuth-elevation-flat/9'") as info:
        load_diffusers_prior(str(unknown), CPU, cache_dir=tmp_path)
    assert "\n" not in str(info.value)

    # the key on a UNet without the class embedding: said at load, not as a shape error mid-run
    mismatched = shutil.copytree(pixel_path, tmp_path / "mismatched")
    index = json.loads((mismatched / "model_index.json").read_text())
    index[CAMERA_CONDITION_KEY] = CAMERA_CONDITION_LAYOUT
    (mismatched / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(DreamerError, match=f"no {feature_count()}-feature projection class embedding") as info:
        load_diffusers_prior(str(mismatched), CPU, cache_dir=tmp_path)
    assert "\n" not in str(info.value)

    # the first layout (5 features) declared on a UNet made for the newest (10): refused at load too
    older = shutil.copytree(camera_pixel_path, tmp_path / "older")
    index = json.loads((older / "model_index.json").read_text())
    index[CAMERA_CONDITION_KEY] = FIRST_LAYOUT
    (older / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(DreamerError, match="no 5-feature projection class embedding"):
        load_diffusers_prior(str(older), CPU, cache_dir=tmp_path)


def test_v_prediction_converted_to_epsilon(sd_v_path: Path, tmp_path: Path) -> None:
    prior = load_diffusers_prior(str(sd_v_path), CPU, cache_dir=tmp_path)
    assert prior.prediction_type == "v_prediction"
    prompt = prior.encode_prompt("a dog")
    views = _views([0.0, 90.0])
    x_t = torch.randn(2, 4, SD_LATENT_SIZE, SD_LATENT_SIZE)
    t = torch.tensor([100, 800])
    eps = prior.predict_noise(x_t, t, prompt, views, ("cond",))[0]
    v = _raw_unet(prior, x_t, t, prompt.branch("cond", views.cameras.view_labels()))
    alpha, sigma = (a.view(-1, 1, 1, 1) for a in prior.alpha_sigma(t))
    torch.testing.assert_close(eps, sigma * x_t + alpha * v, atol=1e-5, rtol=1e-5)


def test_sample_prediction_converted_to_epsilon(sd: DiffusersPrior) -> None:
    sd.prediction_type = "sample"  # same weights, read as an x0-predictor
    prompt = sd.encode_prompt("a dog")
    views = _views([0.0])
    x_t, t = torch.randn(1, 4, SD_LATENT_SIZE, SD_LATENT_SIZE), torch.tensor([500])
    eps = sd.predict_noise(x_t, t, prompt, views, ("uncond",))[0]
    x0 = _raw_unet(sd, x_t, t, prompt.embeddings["uncond"][None])
    alpha, sigma = (a.view(-1, 1, 1, 1) for a in sd.alpha_sigma(t))
    torch.testing.assert_close(eps, (x_t - alpha * x0) / sigma, atol=1e-5, rtol=1e-5)


def test_prompt_cache_skips_text_encoder(
    sd_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = load_diffusers_prior(str(sd_path), CPU, cache_dir=tmp_path)
    p1 = first.encode_prompt("a corgi", "blurry")
    assert first.text_encoder_loads == 1 and first.text_encoder_calls == 1
    assert first._text_encoder is None  # released after embedding
    files = sorted((tmp_path / "prompts").iterdir())
    assert len(files) == 6 and all(f.suffix == ".safetensors" for f in files)  # no tmp files left

    def no_encoder(*args: object) -> None:
        raise AssertionError("the text encoder must not be loaded on a cache hit")

    monkeypatch.setattr(dp, "_load_text_parts", no_encoder)
    second = load_diffusers_prior(str(sd_path), CPU, cache_dir=tmp_path)
    p2 = second.encode_prompt("a corgi", "blurry")
    assert second.text_encoder_loads == 0 and second.text_encoder_calls == 0
    for key, emb in p1.embeddings.items():
        torch.testing.assert_close(p2.embeddings[key], emb)


def test_prompt_cache_default_dir(sd_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DREAMER_CACHE", str(tmp_path / "dc"))
    load_diffusers_prior(str(sd_path), CPU).encode_prompt("a cat")
    assert len(list((tmp_path / "dc" / "prompts").glob("*.safetensors"))) == 6


def test_hub_snapshot_in_cache(sd_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--tiny--sd"
    shutil.copytree(sd_path, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    prior = load_diffusers_prior("tiny/sd", CPU, cache_dir=tmp_path / "cache")
    assert prior.name == "tiny/sd" and prior.revision == commit


def test_missing_hub_model_fails_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    start = time.perf_counter()
    with pytest.raises(DreamerError) as info:
        load_diffusers_prior("sd21", CPU, cache_dir=tmp_path)
    assert time.perf_counter() - start < 5.0
    message = str(info.value)
    assert "\n" not in message
    assert "stabilityai/stable-diffusion-2-1-base" in message and "not available offline" in message


def test_incomplete_or_corrupt_folder(sd_path: Path, tmp_path: Path) -> None:
    broken = shutil.copytree(sd_path, tmp_path / "broken")
    (broken / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(DreamerError, match="incomplete.*unet/ weights") as info:
        load_diffusers_prior(str(broken), CPU, cache_dir=tmp_path)
    assert "\n" not in str(info.value)

    corrupt = shutil.copytree(sd_path, tmp_path / "corrupt")
    (corrupt / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(DreamerError, match="could not be loaded") as info:
        load_diffusers_prior(str(corrupt), CPU, cache_dir=tmp_path)
    assert "\n" not in str(info.value)

    with pytest.raises(DreamerError, match="does not exist"):
        load_diffusers_prior(str(tmp_path / "no" / "such" / "model"), CPU, cache_dir=tmp_path)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fp16_on_cuda(sd_path: Path, tmp_path: Path) -> None:
    prior = load_diffusers_prior(str(sd_path), torch.device("cuda"), cache_dir=tmp_path)
    assert prior.dtype == torch.float16 and next(prior.unet.parameters()).dtype == torch.float16
    images = torch.rand(2, 64, 64, 3, device="cuda", requires_grad=True)
    z = prior.encode(images)
    z.sum().backward()
    assert z.dtype == torch.float32 and images.grad is not None and torch.isfinite(images.grad).all()
    prompt = prior.encode_prompt("a corgi")
    eps = prior.predict_noise(
        z.detach(), torch.tensor([10, 900], device="cuda"), prompt, _views([0.0, 180.0])
    )
    assert eps.dtype == torch.float32 and eps.shape == (2, 2, 4, SD_LATENT_SIZE, SD_LATENT_SIZE)
    assert torch.isfinite(eps).all()
