"""Marigold normals (diffusers' ``MarigoldNormalsPipeline``) behind the ``NormalEstimator`` contract.

Marigold answers in the contract's frame already (x right, y up, z toward the viewer; see the
``visualize_normals`` docstring in diffusers and ``geometry-and-normals.md`` B5), so no axes are
flipped here. What this module does take care of:

- layout: renders arrive channels-last [B, H, W, 3]; the pipeline takes NCHW tensors and returns
  NCHW for ``output_type="pt"`` (NHWC for "np", which has varied across diffusers versions), so
  the output layout is read off its shape against the known size (``to_channels_last``);
- resolution: ``processing_resolution=0`` by default, i.e. the render's own size (the model's
  default, 768, would upsample a 512 render and cost (768/512)^2 more UNet work);
- confidence: with ``ensemble_size > 1`` the pipeline's uncertainty (mean angle to the ensemble
  mean, over pi) becomes ``1 - uncertainty``; a single prediction has no spread, so all ones.

Example:
    >>> est = load_marigold("marigold", torch.device("cuda"), ensemble_size=3)  # doctest: +SKIP
    >>> pred = est.predict(images, views)  # images [B, H, W, 3] -> pred.normals [B, H, W, 3]  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dreamer.errors import DreamerError
from dreamer.normals.base import NormalEstimator, NormalPrediction
from dreamer.priors.base import Views
from dreamer.priors.weights import (
    DIFFUSERS_WEIGHTS,
    NORMAL_ALIASES,
    TRANSFORMERS_WEIGHTS,
    first_line,
    resolve_model,
    weights_variant,
)

#: how an error line tells the user to use a local copy instead
_PASS_FOLDER = "set polish.estimator to"
#: the latent downsampling of every Marigold VAE; processing resolutions must be multiples of it
_VAE_SCALE = 8

Reduction = Literal["closest", "mean"]


def to_channels_last(x: Tensor | np.ndarray, batch: int, height: int, width: int, channels: int) -> Tensor:
    """[N, H, W, C] from a pipeline output in NCHW or NHWC, told apart by the known sizes.

    Trusting one layout silently breaks when diffusers changes it (a wrong ``reshape`` even keeps
    the shape right while scrambling pixels), so the shape is checked against the render's size
    and anything else fails loudly. NCHW wins the one ambiguous case (C == H == W): it is what
    ``output_type="pt"`` returns.
    """
    t = torch.as_tensor(x)
    if t.ndim == 4 and tuple(t.shape) == (batch, channels, height, width):
        return t.permute(0, 2, 3, 1)
    if t.ndim == 4 and tuple(t.shape) == (batch, height, width, channels):
        return t
    raise RuntimeError(
        f"Marigold returned shape {tuple(t.shape)}; expected [{batch}, {channels}, {height}, {width}] (NCHW) "
        f"or [{batch}, {height}, {width}, {channels}] (NHWC)"
    )


class MarigoldEstimator(NormalEstimator):
    """Per-pixel camera-frame normals of shaded renders from a Marigold normals pipeline.

    Args:
        pipeline: a loaded ``MarigoldNormalsPipeline`` (or anything called the same way).
        name: hub id or folder, recorded in run.json.
        revision: the weights' commit hash or folder digest, when known.
        num_inference_steps: denoising steps; None = the model's ``default_denoising_steps``.
        ensemble_size: predictions per image; above 1 they are reduced per pixel and their spread
            gives the confidence (the pipeline notes that 2 behaves like 1; use 3 or more).
        processing_resolution: longer side the image is resized to before the VAE; 0 = the
            render's own size (no upsampling), None = the model's default (768 for the hub models).
        batch_size: how many (image, ensemble member) pairs go through the UNet at once.
        reduction: how ensemble members are merged per pixel: the member "closest" to the mean
            direction, or the normalised "mean".
        seed: seed of the initial latent noise, so the same renders give the same targets;
            None draws fresh noise every call.
    """

    def __init__(
        self,
        pipeline: Any,
        name: str,
        *,
        revision: str | None = None,
        num_inference_steps: int | None = None,
        ensemble_size: int = 1,
        processing_resolution: int | None = 0,
        batch_size: int = 8,
        reduction: Reduction = "closest",
        seed: int | None = 0,
    ) -> None:
        if num_inference_steps is not None and num_inference_steps < 1:
            raise DreamerError(f"Marigold num_inference_steps must be at least 1 (or None), got {num_inference_steps}")
        if ensemble_size < 1:
            raise DreamerError(f"Marigold ensemble_size must be at least 1, got {ensemble_size}")
        if processing_resolution is not None and (processing_resolution < 0 or processing_resolution % _VAE_SCALE):
            raise DreamerError(
                f"Marigold processing_resolution must be 0 (render size) or a positive multiple of {_VAE_SCALE}, "
                f"got {processing_resolution}"
            )
        if batch_size < 1:
            raise DreamerError(f"Marigold batch_size must be at least 1, got {batch_size}")
        if reduction not in ("closest", "mean"):
            raise DreamerError(f"Marigold reduction must be 'closest' or 'mean', got {reduction!r}")
        self.pipeline = pipeline
        self.name = name
        self.revision = revision
        self.num_inference_steps = num_inference_steps
        self.ensemble_size = ensemble_size
        self.processing_resolution = processing_resolution
        self.batch_size = batch_size
        self.reduction: Reduction = reduction
        self.seed = seed
        # a CPU generator: the pipeline draws the noise on CPU and moves it, so targets agree across devices
        self._generator = torch.Generator().manual_seed(seed) if seed is not None else None

    def predict(self, images: Tensor, views: Views) -> NormalPrediction:
        """Normals [B, H, W, 3] (unit, OpenGL camera frame) and confidence [B, H, W, 1] of ``images``.

        ``images`` is [B, H, W, 3] in [0, 1] (values outside are clipped: the pipeline rejects
        them); ``views`` is not used, Marigold sees only pixels. Outputs are float32 on the
        images' device and carry no gradient.
        """
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be [B, H, W, 3], got {tuple(images.shape)}")
        b, h, w, _ = images.shape
        pixels = images.detach().float().clamp(0.0, 1.0).permute(0, 3, 1, 2).contiguous()  # [B, 3, H, W]
        with_uncertainty = self.ensemble_size > 1
        with torch.no_grad():
            out = self.pipeline(
                pixels,
                num_inference_steps=self.num_inference_steps,
                ensemble_size=self.ensemble_size,
                processing_resolution=self.processing_resolution,
                match_input_resolution=True,
                batch_size=self.batch_size,
                ensembling_kwargs={"reduction": self.reduction},
                generator=self._generator,
                output_type="pt",
                output_uncertainty=with_uncertainty,
            )
        normals = to_channels_last(out.prediction, b, h, w, 3).to(images.device, torch.float32)
        # renormalise in fp32: the pipeline normalised in its own dtype (fp16 on CUDA) before resizing
        normals = F.normalize(torch.nan_to_num(normals), dim=-1)
        if with_uncertainty and out.uncertainty is not None:
            uncertainty = to_channels_last(out.uncertainty, b, h, w, 1).to(images.device, torch.float32)
            confidence = (1.0 - torch.nan_to_num(uncertainty, nan=1.0)).clamp(0.0, 1.0)
        else:
            confidence = torch.ones(b, h, w, 1, device=images.device)
        return NormalPrediction(normals=normals.contiguous(), confidence=confidence.contiguous())

    def describe(self) -> dict:
        return {
            **super().describe(),
            "revision": self.revision,
            "num_inference_steps": self.num_inference_steps,
            "ensemble_size": self.ensemble_size,
            "processing_resolution": self.processing_resolution,
            "reduction": self.reduction,
            "seed": self.seed,
        }


def load_marigold(
    spec: str,
    device: torch.device | str,
    dtype: torch.dtype | None = None,
    download: bool = True,
    **options: Any,
) -> MarigoldEstimator:
    """Load a frozen Marigold normals model by alias (``marigold``), hub id or local folder.

    Args:
        spec: a key of ``NORMAL_ALIASES`` ("marigold" = ``prs-eth/marigold-normals-v1-1``), a hub
            id ("owner/name", taken from the Hugging Face cache) or a diffusers folder.
        device: where the networks run.
        dtype: fp16 on CUDA and fp32 elsewhere by default (fp16 matmuls are slow or missing on CPU).
        download: False = use the Hugging Face cache only, never fetch (``polish.estimator: auto``).
        **options: ``MarigoldEstimator`` options (num_inference_steps, ensemble_size, ...).

    Raises:
        DreamerError: (one line) the weights are missing or incomplete, the folder is not a
            Marigold normals model, or it could not be read.
    """
    device = torch.device(device)
    if dtype is None:
        dtype = torch.float16 if device.type == "cuda" else torch.float32
    name, folder, revision = resolve_model(
        spec, NORMAL_ALIASES, role="normal estimator", pass_folder=_PASS_FOLDER, download=download
    )
    _check_is_marigold_normals(name, folder)

    from diffusers import MarigoldNormalsPipeline

    parts = (("unet", DIFFUSERS_WEIGHTS), ("vae", DIFFUSERS_WEIGHTS), ("text_encoder", TRANSFORMERS_WEIGHTS))
    only_fp16 = all(weights_variant(folder / sub, stems) == "fp16" for sub, stems in parts)
    try:
        pipe = MarigoldNormalsPipeline.from_pretrained(
            str(folder),
            torch_dtype=dtype,
            local_files_only=True,
            variant="fp16" if only_fp16 else None,
        )
    except Exception as err:  # any loader failure becomes one readable line
        raise DreamerError(f"normal estimator '{name}' could not be loaded from {folder}: {first_line(err)}") from err
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        module.requires_grad_(False).eval()
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return MarigoldEstimator(pipe, name, revision=revision, **options)


def _check_is_marigold_normals(name: str, folder: Path) -> None:
    """Fail in one line, before any weights are read, on a folder that is not Marigold normals.

    An SD folder passes ``resolve_model`` (same parts) but its UNet takes 4 channels, not the
    image + normal latents (8); a Marigold depth model has 8 but predicts depth.
    """
    try:
        index = json.loads((folder / "model_index.json").read_text())
        unet = json.loads((folder / "unet" / "config.json").read_text())
    except (OSError, ValueError) as err:
        raise DreamerError(f"normal estimator '{name}' at {folder} is unreadable: {first_line(err)}") from err
    task = index.get("prediction_type")
    if unet.get("in_channels") != 8 or task not in (None, "normals"):
        if task not in (None, "normals"):
            reason = f"its pipeline predicts {task}"
        else:
            reason = f"its UNet takes {unet.get('in_channels')} input channels, not 8"
        raise DreamerError(
            f"normal estimator '{name}' is not a Marigold normals model ({reason}): "
            "use e.g. prs-eth/marigold-normals-v1-1"
        )
