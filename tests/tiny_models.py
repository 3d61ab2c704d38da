"""Tiny, seeded, random diffusers models saved in the diffusers folder layout.

No weights can be downloaded in tests, so priors, objectives and pipelines are exercised on
models built from configs. The SD and pixel builders write a folder that ``load_diffusers_prior(path)``
reads like a real hub snapshot (``model_index.json``, ``unet/``, ``text_encoder/``,
``tokenizer/``, ``scheduler/`` and, for the latent model, ``vae/``).
``make_tiny_marigold_normals`` writes a ``MarigoldNormalsPipeline`` folder (same parts, an
8-channel UNet) that ``dreamer.normals.marigold.load_marigold(path)`` reads.

Sizes (so tests can reason about shapes):
    ``make_tiny_sd``: latents [B, 4, 8, 8]; the VAE downsamples 8x, so renders are resized to
    64x64 pixels. ``make_tiny_pixel_unet``: pixels [B, 3, 16, 16] in [-1, 1].
    Both: text embeddings [77, 16] from a 2-layer CLIP text encoder; DDPM scaled_linear schedule
    with 1000 steps (SD's); ``camera_conditioned=True`` adds the projection class
    embedding of the newest camera layout and declares it in ``model_index.json``
    (:mod:`dreamer.priors.camera_condition`).
    ``make_tiny_marigold_normals``: the same VAE (8x) and text encoder; any render size works
    (the pipeline pads to a multiple of 8); DDIM v-prediction, ``MARIGOLD_STEPS`` steps by default.

Example:
    >>> path = make_tiny_sd(tmp_path / "sd")            # doctest: +SKIP
    >>> prior = load_diffusers_prior(str(path), torch.device("cpu"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch

from dreamer.priors.camera_condition import CAMERA_CONDITION_KEY, CAMERA_CONDITION_LAYOUT, feature_count
from dreamer.priors.shapes.text import clip_text_encoder, write_clip_tokenizer

if TYPE_CHECKING:
    from diffusers import DDPMScheduler

PredictionType = Literal["epsilon", "v_prediction", "sample"]

#: hidden size of the tiny text encoder, i.e. the UNets' cross_attention_dim
TEXT_DIM = 16
#: latent side of the tiny SD model and its VAE's downsampling factor
SD_LATENT_SIZE = 8
SD_VAE_SCALE = 8
#: pixel side of the tiny pixel-space model
PIXEL_SIZE = 16
#: the tiny Marigold model's config defaults (denoising steps, processing resolution in pixels)
MARIGOLD_STEPS = 2
MARIGOLD_RESOLUTION = 32

_WORDS = ("a", "corgi", "dog", "cat", "chair", "front", "side", "back", "overhead", "view", "blurry")


def _unet(
    in_channels: int, sample_size: int, out_channels: int | None = None, camera_conditioned: bool = False
) -> torch.nn.Module:
    from diffusers import UNet2DConditionModel

    camera = {}
    if camera_conditioned:
        camera = {"class_embed_type": "projection", "projection_class_embeddings_input_dim": feature_count()}
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=out_channels or in_channels,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_DIM,
        attention_head_dim=4,
        **camera,
    ).eval()


def _scheduler(prediction_type: PredictionType) -> DDPMScheduler:
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type=prediction_type,
    )
    return scheduler


def _save_text_parts(path: Path) -> None:
    """Tokenizer and text encoder shared by the tiny models (ids agree with the vocabulary)."""
    write_clip_tokenizer(path / "tokenizer", _WORDS)
    vocab = json.loads((path / "tokenizer" / "vocab.json").read_text())
    encoder = clip_text_encoder(vocab, TEXT_DIM, layers=2, heads=2).eval()
    encoder.save_pretrained(str(path / "text_encoder"))


def _vae() -> torch.nn.Module:
    """A 4-channel latent VAE that downsamples ``SD_VAE_SCALE`` (8) times, like SD's."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=SD_LATENT_SIZE * SD_VAE_SCALE,
    ).eval()


def make_tiny_sd(
    path: Path, prediction_type: PredictionType = "epsilon", seed: int = 0, camera_conditioned: bool = False
) -> Path:
    """Build and save a tiny latent model shaped like Stable Diffusion (VAE + text UNet).

    Args:
        path: folder to create (diffusers layout).
        prediction_type: what the UNet is declared to predict ("epsilon", "v_prediction", "sample").
        seed: torch seed for the random weights; same seed, same model.
        camera_conditioned: give the UNet the camera features as ``class_labels``.

    Returns:
        ``path``.
    """
    path = Path(path)
    torch.manual_seed(seed)
    unet = _unet(in_channels=4, sample_size=SD_LATENT_SIZE, camera_conditioned=camera_conditioned)
    vae = _vae()
    path.mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(str(path / "unet"))
    vae.save_pretrained(str(path / "vae"))
    _scheduler(prediction_type).save_pretrained(str(path / "scheduler"))
    _save_text_parts(path)
    _write_model_index(path, "StableDiffusionPipeline", with_vae=True, camera_conditioned=camera_conditioned)
    return path


def make_tiny_pixel_unet(
    path: Path, prediction_type: PredictionType = "epsilon", seed: int = 0, camera_conditioned: bool = False
) -> Path:
    """Build and save a tiny pixel-space text-conditioned UNet (3 channels, 16x16, no VAE).

    Shaped like DeepFloyd IF stage I (or a small project-trained model): the prior works on
    pixels in [-1, 1]. ``camera_conditioned``: the UNet also takes the camera features, like the
    shapes prior.

    Returns:
        ``path``.
    """
    path = Path(path)
    torch.manual_seed(seed)
    unet = _unet(in_channels=3, sample_size=PIXEL_SIZE, camera_conditioned=camera_conditioned)
    path.mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(str(path / "unet"))
    _scheduler(prediction_type).save_pretrained(str(path / "scheduler"))
    _save_text_parts(path)
    _write_model_index(path, "DiffusionPipeline", with_vae=False, camera_conditioned=camera_conditioned)
    return path


def make_tiny_marigold_normals(
    path: Path,
    default_denoising_steps: int = MARIGOLD_STEPS,
    default_processing_resolution: int = MARIGOLD_RESOLUTION,
    seed: int = 0,
) -> Path:
    """Build and save a tiny random ``MarigoldNormalsPipeline`` (the layout of ``prs-eth/marigold-normals-*``).

    The UNet takes the image latent and the noisy normal latent concatenated (8 channels) and
    predicts 4; the scheduler is DDIM with v-prediction and trailing timesteps (Marigold v1-1's).
    The pipeline's own config (``prediction_type="normals"``, ``use_full_z_range``, default steps
    and processing resolution) goes into ``model_index.json`` through ``save_pretrained``, so the
    folder loads with ``MarigoldNormalsPipeline.from_pretrained`` like a hub snapshot. The default
    processing resolution is small so that a call with ``processing_resolution=None`` stays cheap.

    Returns:
        ``path``.
    """
    from diffusers import DDIMScheduler, MarigoldNormalsPipeline
    from transformers import CLIPTextModel, CLIPTokenizer

    path = Path(path)
    torch.manual_seed(seed)
    path.mkdir(parents=True, exist_ok=True)
    _save_text_parts(path)  # written, then read back: the pipeline object needs the instances
    pipe = MarigoldNormalsPipeline(
        unet=_unet(in_channels=8, out_channels=4, sample_size=SD_LATENT_SIZE),
        vae=_vae(),
        scheduler=DDIMScheduler(
            num_train_timesteps=1000,
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            clip_sample=False,
            set_alpha_to_one=False,
            steps_offset=1,
            prediction_type="v_prediction",
            timestep_spacing="trailing",
        ),
        text_encoder=CLIPTextModel.from_pretrained(str(path / "text_encoder")),
        tokenizer=CLIPTokenizer.from_pretrained(str(path / "tokenizer")),
        prediction_type="normals",
        use_full_z_range=True,
        default_denoising_steps=default_denoising_steps,
        default_processing_resolution=default_processing_resolution,
    )
    pipe.save_pretrained(str(path))
    return path


def _write_model_index(path: Path, class_name: str, with_vae: bool, camera_conditioned: bool = False) -> None:
    index: dict = {
        "_class_name": class_name,
        "_diffusers_version": "0.42.1",
        "scheduler": ["diffusers", "DDPMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
    }
    if with_vae:
        index["vae"] = ["diffusers", "AutoencoderKL"]
    if camera_conditioned:
        index[CAMERA_CONDITION_KEY] = CAMERA_CONDITION_LAYOUT
    (path / "model_index.json").write_text(json.dumps(index, indent=2))
