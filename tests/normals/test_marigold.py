"""MarigoldEstimator on a tiny random Marigold model: loading, shapes, layout, confidence, errors."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from diffusers.pipelines.marigold import MarigoldNormalsOutput

from dreamer.cameras import orbit_cameras
from dreamer.errors import DreamerError
from dreamer.normals.marigold import MarigoldEstimator, load_marigold, to_channels_last
from dreamer.priors.base import Views
from tests.tiny_models import make_tiny_marigold_normals

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def marigold_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_marigold_normals(tmp_path_factory.mktemp("tiny_marigold"))


@pytest.fixture(scope="module")
def marigold(marigold_path: Path) -> MarigoldEstimator:
    return load_marigold(str(marigold_path), CPU)


def _views(n: int) -> Views:
    return Views(cameras=orbit_cameras([0.0] * n, [90.0 * i for i in range(n)]), background=torch.ones(n, 3))


def _renders(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, h, w, 3, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------- the real (tiny) pipeline
@pytest.mark.parametrize(("h", "w"), [(32, 32), (40, 24)])
def test_predict_shapes_unit_length(marigold: MarigoldEstimator, h: int, w: int) -> None:
    images = _renders(2, h, w).requires_grad_(True)
    pred = marigold.predict(images, _views(2))
    assert pred.normals.shape == (2, h, w, 3) and pred.confidence.shape == (2, h, w, 1)
    assert pred.normals.dtype == torch.float32 and pred.confidence.dtype == torch.float32
    assert pred.foreground is None
    assert not pred.normals.requires_grad and not pred.confidence.requires_grad
    assert torch.isfinite(pred.normals).all()
    torch.testing.assert_close(pred.normals.norm(dim=-1), torch.ones(2, h, w), atol=1e-4, rtol=0)
    assert torch.equal(pred.confidence, torch.ones(2, h, w, 1))


def test_loaded_from_folder_with_model_defaults(marigold: MarigoldEstimator, marigold_path: Path) -> None:
    assert marigold.name == str(marigold_path.resolve()) and marigold.revision
    assert marigold.pipeline.default_denoising_steps == 2 and marigold.pipeline.use_full_z_range
    assert next(marigold.pipeline.unet.parameters()).dtype == torch.float32
    # None = the model's own steps / processing resolution, as in the pipeline
    est = MarigoldEstimator(marigold.pipeline, marigold.name, num_inference_steps=None, processing_resolution=None)
    assert est.predict(_renders(1, 24, 40), _views(1)).normals.shape == (1, 24, 40, 3)


def test_ensemble_gives_confidence(marigold: MarigoldEstimator) -> None:
    est = MarigoldEstimator(marigold.pipeline, marigold.name, ensemble_size=3)
    pred = est.predict(_renders(2, 40, 24), _views(2))
    assert pred.normals.shape == (2, 40, 24, 3) and pred.confidence.shape == (2, 40, 24, 1)
    torch.testing.assert_close(pred.normals.norm(dim=-1), torch.ones(2, 40, 24), atol=1e-4, rtol=0)
    assert torch.isfinite(pred.confidence).all()
    assert pred.confidence.min() >= 0 and pred.confidence.max() <= 1
    assert pred.confidence.min() < 1.0  # random members disagree somewhere


def test_seeded_predictions_repeat(marigold: MarigoldEstimator) -> None:
    images = _renders(1, 32, 32, seed=3)
    first = MarigoldEstimator(marigold.pipeline, marigold.name, seed=7).predict(images, _views(1)).normals
    again = MarigoldEstimator(marigold.pipeline, marigold.name, seed=7).predict(images, _views(1)).normals
    other = MarigoldEstimator(marigold.pipeline, marigold.name, seed=8).predict(images, _views(1)).normals
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


# ---------------------------------------------------------------------- layout
def test_to_channels_last_moves_every_value() -> None:
    b, c, h, w = 2, 3, 5, 4  # all sizes different: a reshape instead of a permute scrambles values
    nchw = torch.arange(b * c * h * w, dtype=torch.float32).reshape(b, c, h, w)
    out = to_channels_last(nchw, b, h, w, c)
    assert out.shape == (b, h, w, c)
    for bi, ci, hi, wi in [(0, 0, 0, 0), (1, 2, 4, 3), (0, 1, 3, 0), (1, 0, 0, 3)]:
        assert out[bi, hi, wi, ci] == nchw[bi, ci, hi, wi]
    assert torch.equal(to_channels_last(out.numpy(), b, h, w, c), out)  # NHWC (output_type="np") passes through
    with pytest.raises(RuntimeError, match="expected"):
        to_channels_last(nchw, b, w, h, c)  # transposed image size
    with pytest.raises(RuntimeError, match="expected"):
        to_channels_last(nchw, b + 1, h, w, c)


class _EchoPipeline:
    """Stands in for the pipeline: checks it gets NCHW in [0, 1] and answers normalize(2 * rgb - 1), NCHW."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, image: torch.Tensor, **kwargs: object) -> MarigoldNormalsOutput:
        self.calls.append(kwargs)
        assert image.ndim == 4 and image.shape[1] == 3, image.shape
        assert image.min() >= 0 and image.max() <= 1
        prediction = F.normalize(image * 2 - 1, dim=1)
        uncertainty = image[:, :1] * 0.5 if kwargs["output_uncertainty"] else None
        return MarigoldNormalsOutput(prediction=prediction, uncertainty=uncertainty, latent=None)


def test_predict_maps_pixels_to_the_right_place() -> None:
    """An asymmetric per-pixel pattern must come back at the same (row, column, channel)."""
    images = _renders(2, 6, 4, seed=1)
    images[0, 0, 0] = torch.tensor([1.0, 0.5, 0.0])  # top-left of the first render: +x, 0y, -z
    pipe = _EchoPipeline()
    pred = MarigoldEstimator(pipe, "echo").predict(images, _views(2))
    torch.testing.assert_close(pred.normals, F.normalize(images * 2 - 1, dim=-1))
    torch.testing.assert_close(pred.normals[0, 0, 0], torch.tensor([1.0, 0.0, -1.0]) / 2**0.5)
    assert pipe.calls[0]["output_type"] == "pt" and pipe.calls[0]["processing_resolution"] == 0

    pred = MarigoldEstimator(pipe, "echo", ensemble_size=3).predict(images, _views(2))
    torch.testing.assert_close(pred.confidence, 1 - images[..., :1] * 0.5)
    assert pipe.calls[1]["ensemble_size"] == 3 and pipe.calls[1]["output_uncertainty"]


def test_out_of_range_pixels_are_clipped() -> None:
    images = _renders(1, 8, 8) * 1.4 - 0.2
    pred = MarigoldEstimator(_EchoPipeline(), "echo").predict(images, _views(1))
    torch.testing.assert_close(pred.normals, F.normalize(images.clamp(0, 1) * 2 - 1, dim=-1))


# ---------------------------------------------------------------------- errors
def _one_line(info: pytest.ExceptionInfo[DreamerError]) -> str:
    message = str(info.value)
    assert message and "\n" not in message
    return message


def test_missing_folder_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(DreamerError, match="does not exist") as info:
        load_marigold(str(tmp_path / "no" / "such" / "marigold"), CPU)
    _one_line(info)


@pytest.mark.parametrize(("spec", "hub_id"), [("marigold", "prs-eth/marigold-normals-v1-1"), ("nobody/nothing", None)])
def test_hub_model_missing_offline(
    spec: str, hub_id: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    with pytest.raises(DreamerError) as info:
        load_marigold(spec, CPU)
    message = _one_line(info)
    assert f"'{hub_id or spec}' is not available offline" in message
    assert f"hf download {hub_id or spec}" in message and "set polish.estimator to" in message
    assert "--prior" not in message


def test_incomplete_or_wrong_folder(marigold_path: Path, tmp_path: Path) -> None:
    broken = shutil.copytree(marigold_path, tmp_path / "broken")
    (broken / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(DreamerError, match="incomplete.*unet/ weights") as info:
        load_marigold(str(broken), CPU)
    assert "--prior" not in _one_line(info)

    sd_like = shutil.copytree(marigold_path, tmp_path / "sd_like")
    config = json.loads((sd_like / "unet" / "config.json").read_text())
    (sd_like / "unet" / "config.json").write_text(json.dumps({**config, "in_channels": 4}))
    with pytest.raises(DreamerError, match="not a Marigold normals model.*4 input channels") as info:
        load_marigold(str(sd_like), CPU)
    _one_line(info)

    corrupt = shutil.copytree(marigold_path, tmp_path / "corrupt")
    (corrupt / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(DreamerError, match="could not be loaded") as info:
        load_marigold(str(corrupt), CPU)
    _one_line(info)


@pytest.mark.parametrize(
    "options",
    [{"ensemble_size": 0}, {"processing_resolution": 30}, {"num_inference_steps": 0}, {"reduction": "median"}],
)
def test_bad_options(options: dict) -> None:
    with pytest.raises(DreamerError) as info:
        MarigoldEstimator(_EchoPipeline(), "echo", **options)
    _one_line(info)


# ---------------------------------------------------------------------- GPU
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fp16_on_cuda(marigold_path: Path) -> None:
    est = load_marigold(str(marigold_path), torch.device("cuda"), ensemble_size=3)
    assert next(est.pipeline.unet.parameters()).dtype == torch.float16
    images = _renders(2, 40, 24).cuda()
    pred = est.predict(images, _views(2))
    assert pred.normals.device.type == "cuda" and pred.normals.dtype == torch.float32
    assert torch.isfinite(pred.normals).all() and torch.isfinite(pred.confidence).all()
    torch.testing.assert_close(pred.normals.norm(dim=-1), torch.ones(2, 40, 24, device="cuda"), atol=1e-4, rtol=0)
    assert pred.confidence.min() >= 0 and pred.confidence.max() <= 1
