"""A frozen diffusers text-to-image model (SD 1.5, SD 2.1-base, pixel-space UNets) as a ``Prior``.

Two kinds of model folder are supported, both in the diffusers layout (``unet/``,
``text_encoder/``, ``tokenizer/``, ``scheduler/``):

* latent priors (there is a ``vae/``): the prior's space is ``scaling_factor * E(2 img - 1)``
  at ``unet.config.sample_size`` (64 for SD, so renders are resized to 512 pixels);
* pixel priors (no ``vae/``, a 3-channel UNet, like DeepFloyd IF stage I): the prior's space is
  the render itself, resized to ``unet.config.sample_size`` and mapped to [-1, 1].

Loading never waits on the network when ``HF_HUB_OFFLINE`` is set: a hub id is first looked up
in the local Hugging Face cache, and a missing or incomplete model is a one-line
``DreamerError``. Text embeddings are cached on disk, so a run whose prompts were seen before
never loads the text encoder.

Example:
    >>> prior = load_diffusers_prior("sd21-base", torch.device("cuda"))  # doctest: +SKIP
    >>> prompt = prior.encode_prompt("a corgi")                          # doctest: +SKIP
    >>> eps = prior.predict_noise(x_t, t, prompt, views)                 # [2, B, 4, 64, 64]
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamer.errors import DreamerError
from dreamer.priors.base import Branch, Prior, Prompt, Views, view_dependent_texts
from dreamer.priors.camera_condition import (
    CAMERA_CONDITION_KEY,
    camera_features,
    feature_count,
    parse_camera_condition,
)
from dreamer.priors.weights import (
    DIFFUSERS_WEIGHTS,
    TRANSFORMERS_WEIGHTS,
    first_line,
    resolve_model,
    weights_variant,
)

if TYPE_CHECKING:
    from torch import nn

#: a model_index.json key (private to Dreamer, ignored by diffusers) that sets ``judges_normal_maps``
JUDGES_NORMAL_MAPS_KEY = "_dreamer_judges_normal_maps"


class DiffusersPrior(Prior):
    """A frozen diffusers UNet (plus VAE and text encoder) behind the score-distillation contract.

    Build it with ``load_diffusers_prior``. The UNet and VAE run in ``dtype`` (fp16 on CUDA by
    default); everything returned is float32. The text encoder is loaded only when a prompt is
    not in the on-disk cache, and dropped again afterwards unless ``keep_text_encoder``.
    A folder whose model_index.json declares ``CAMERA_CONDITION_KEY`` has a camera-conditioned
    UNet (``camera_conditioned``); every UNet call then gets ``unet_condition(views, ...)``.
    """

    def __init__(
        self,
        *,
        name: str,
        folder: Path,
        revision: str | None,
        unet: nn.Module,
        vae: nn.Module | None,
        alphas_cumprod: Tensor,
        prediction_type: str,
        device: torch.device,
        dtype: torch.dtype,
        cache_dir: Path,
        keep_text_encoder: bool = False,
    ) -> None:
        if prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise DreamerError(f"model '{name}': unsupported scheduler prediction_type '{prediction_type}'")
        self.name = name
        self.folder = folder
        self.revision = revision
        self.unet = unet
        self.vae = vae
        self.prediction_type = prediction_type
        self.device = device
        self.dtype = dtype
        self.cache_dir = cache_dir
        self.keep_text_encoder = keep_text_encoder
        index = _model_index(folder)
        self.judges_normal_maps = index.get(JUDGES_NORMAL_MAPS_KEY, True)
        self.camera_layout = parse_camera_condition(index.get(CAMERA_CONDITION_KEY), name)
        if self.camera_layout is not None and (
            unet.config.class_embed_type != "projection"
            or unet.config.projection_class_embeddings_input_dim != feature_count(self.camera_layout)
        ):
            raise DreamerError(
                f"model '{name}': model_index.json declares camera conditioning {self.camera_layout!r} but its "
                f"UNet has no {feature_count(self.camera_layout)}-feature projection class embedding"
            )
        self.sample_size = int(unet.config.sample_size)
        self.in_channels = int(unet.config.in_channels)
        self.vae_scale = 2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 1
        self._alphas_cumprod = alphas_cumprod.to(device=device, dtype=torch.float32)
        self._text_encoder: nn.Module | None = None
        self._tokenizer: Any = None
        #: how many times the text encoder was loaded / run (tests and logs read these)
        self.text_encoder_loads = 0
        self.text_encoder_calls = 0

    # ------------------------------------------------------------------ schedule
    @property
    def alphas_cumprod(self) -> Tensor:
        return self._alphas_cumprod

    @property
    def is_latent(self) -> bool:
        """Whether the prior works on VAE latents (else on pixels in [-1, 1])."""
        return self.vae is not None

    @property
    def camera_conditioned(self) -> bool:
        """Whether the UNet takes camera features (its model_index.json names a layout)."""
        return self.camera_layout is not None

    @property
    def image_size(self) -> int:
        """The pixel side renders are resized to before ``encode``."""
        return self.sample_size * self.vae_scale

    # ------------------------------------------------------------------ images
    def encode(self, images: Tensor) -> Tensor:
        """Renders [B, H, W, 3] in [0, 1] -> [B, C, s, s] float32, with gradients to the renders.

        Latent priors take the posterior *mean* of the VAE (not a sample): deterministic, and
        for SD's VAE the posterior std is negligible next to the diffusion noise.
        """
        x = images.permute(0, 3, 1, 2)
        size = self.image_size
        if x.shape[-2:] != (size, size):  # shrinking (a 112 px render for a 32 px prior) is area-filtered
            shrink = x.shape[-1] > size
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)
        x = x * 2.0 - 1.0
        if self.vae is None:
            return x.float()
        latents = self.vae.encode(x.to(self.dtype)).latent_dist.mean
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        return ((latents.float() - shift) * self.vae.config.scaling_factor).float()

    def decode(self, x: Tensor) -> Tensor:
        """[B, C, s, s] -> images [B, H, W, 3] in [0, 1] float32 (H = s * VAE downsampling)."""
        if self.vae is not None:
            shift = getattr(self.vae.config, "shift_factor", None) or 0.0
            z = x.float() / self.vae.config.scaling_factor + shift
            x = self.vae.decode(z.to(self.dtype)).sample
        return ((x.float() + 1.0) * 0.5).clamp(0.0, 1.0).permute(0, 2, 3, 1)

    # ------------------------------------------------------------------ prompts
    def encode_prompt(self, text: str, negative: str = "") -> Prompt:
        """Embeddings [L, D] for each view label, "plain" and "uncond" (the negative or "")."""
        texts: dict[str, str] = dict(view_dependent_texts(text))
        texts["plain"] = text
        texts["uncond"] = negative
        embeddings = self._embed(list(texts.values()))
        return Prompt(
            text=text,
            negative=negative,
            embeddings={key: emb.to(self.device, self.dtype) for key, emb in zip(texts, embeddings)},
        )

    def _cache_path(self, text: str) -> Path:
        key = json.dumps([self.name, self.revision, text])
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
        return self.cache_dir / "prompts" / f"{digest}.safetensors"

    def _embed(self, texts: list[str]) -> list[Tensor]:
        """float32 CPU embeddings for texts, from the disk cache where possible."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        found: dict[str, Tensor] = {}
        for text in set(texts):
            path = self._cache_path(text)
            if path.is_file():
                try:
                    found[text] = load_file(str(path))["embedding"]
                except (SafetensorError, OSError, KeyError):
                    pass  # unreadable cache entry: recompute and overwrite it
        missing = sorted(set(texts) - found.keys())
        if missing:
            for text, emb in zip(missing, self._run_text_encoder(missing)):
                found[text] = emb
                self._store(text, emb)
            if not self.keep_text_encoder:
                self.release_text_encoder()
        return [found[text] for text in texts]

    def _store(self, text: str, emb: Tensor) -> None:
        """Write one embedding atomically (tmp file + rename), so readers never see half a file."""
        from safetensors.torch import save_file

        path = self._cache_path(text)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            save_file({"embedding": emb.contiguous()}, str(tmp))
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)  # a read-only cache only costs recomputation

    @torch.no_grad()
    def _run_text_encoder(self, texts: list[str]) -> Tensor:
        encoder, tokenizer = self._load_text_encoder()
        max_length = tokenizer.model_max_length if tokenizer.model_max_length < 100_000 else 77
        tokens = tokenizer(
            texts, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt"
        )
        kwargs = {}
        if encoder.config.model_type != "clip_text_model" or getattr(
            encoder.config, "use_attention_mask", False
        ):
            kwargs["attention_mask"] = tokens.attention_mask.to(self.device)
        self.text_encoder_calls += 1
        return encoder(tokens.input_ids.to(self.device), **kwargs)[0].float().cpu()

    def _load_text_encoder(self) -> tuple[nn.Module, Any]:
        if self._text_encoder is None:
            self._text_encoder, self._tokenizer = _load_text_parts(
                self.name, self.folder, self.device, self.dtype
            )
            self.text_encoder_loads += 1
        return self._text_encoder, self._tokenizer

    def release_text_encoder(self) -> None:
        """Drop the text encoder to free memory; it is reloaded if an unseen prompt comes."""
        self._text_encoder = None
        self._tokenizer = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # ------------------------------------------------------------------ denoiser
    def unet_condition(self, views: Views, repeats: int = 1) -> dict[str, Tensor]:
        """Extra UNet keyword arguments for a batch: ``{"class_labels": [repeats * B, F]}``, or {}.

        Args:
            views: the batch's cameras and shading (flat = 1 for ``shading == "albedo"``).
            repeats: how many times the batch is stacked in the UNet call (CFG branches).
        """
        if self.camera_layout is None:
            return {}
        features = camera_features(views.cameras, flat=views.shading == "albedo", layout=self.camera_layout)
        return {"class_labels": features.to(self.device, self.dtype).repeat(repeats, 1)}

    @torch.no_grad()
    def predict_noise(
        self,
        x_t: Tensor,
        t: Tensor,
        prompt: Prompt,
        views: Views,
        branches: Sequence[Branch] = ("cond", "uncond"),
    ) -> Tensor:
        """Epsilon [K, B, C, h, w] float32 for K branches from ONE UNet call on K*B samples.

        The UNet is frozen and run without gradients: score distillation drops its Jacobian.
        """
        k, b = len(branches), x_t.shape[0]
        labels = views.cameras.view_labels()
        if len(labels) != b:
            raise ValueError(f"predict_noise: {len(labels)} cameras for a batch of {b}")
        t = t.to(self.device).long().reshape(-1).expand(b)
        emb = torch.cat([prompt.branch(branch, labels) for branch in branches]).to(self.device, self.dtype)
        sample = x_t.to(self.device, self.dtype).repeat(k, 1, 1, 1)
        condition = self.unet_condition(views, k)
        out = self.unet(sample, t.repeat(k), encoder_hidden_states=emb, return_dict=False, **condition)[0]
        if out.shape[1] == 2 * self.in_channels:  # learned variance (DeepFloyd IF): keep the mean part
            out = out[:, : self.in_channels]
        out = out.float().reshape(k, b, *out.shape[1:])
        if self.prediction_type == "epsilon":
            return out
        alpha, sigma = (v.view(1, b, 1, 1, 1) for v in self.alpha_sigma(t))
        x = x_t.to(self.device).float().unsqueeze(0)
        if self.prediction_type == "v_prediction":
            return sigma * x + alpha * out
        return (x - alpha * out) / sigma  # "sample": the model predicts x0

    def describe(self) -> dict:
        """What run.json records about this prior."""
        return {
            **super().describe(),
            "space": "latent" if self.is_latent else "pixel",
            "sample_size": self.sample_size,
            "prediction_type": self.prediction_type,
            "camera_conditioned": self.camera_conditioned,
            "camera_layout": self.camera_layout,
            "dtype": str(self.dtype).removeprefix("torch."),
        }


# ---------------------------------------------------------------------- loading
def load_diffusers_prior(
    name_or_path: str,
    device: torch.device,
    dtype: torch.dtype | None = None,
    cache_dir: Path | None = None,
    keep_text_encoder: bool = False,
) -> DiffusersPrior:
    """Load a frozen diffusers model by alias, hub id or local folder.

    Args:
        name_or_path: a key of ``PRIOR_ALIASES``, a hub id ("owner/name") or a diffusers folder.
        device: where the networks run.
        dtype: the networks' dtype; fp16 on CUDA and fp32 elsewhere by default.
        cache_dir: Dreamer's cache root (prompt embeddings go to ``cache_dir/prompts``);
            default ``$DREAMER_CACHE`` or ``~/.cache/dreamer``.
        keep_text_encoder: keep the text encoder in memory after embedding prompts.

    Raises:
        DreamerError: the model is not available offline, or its folder is incomplete or unreadable.
    """
    device = torch.device(device)
    if dtype is None:
        dtype = torch.float16 if device.type == "cuda" else torch.float32
    if cache_dir is None:
        cache_dir = Path(os.environ.get("DREAMER_CACHE") or Path.home() / ".cache" / "dreamer")
    name, folder, revision = resolve_model(name_or_path)

    from diffusers import AutoencoderKL, DDPMScheduler

    try:
        unet_cls = _diffusers_class(folder / "unet", "UNet2DConditionModel")
        unet = unet_cls.from_pretrained(
            str(folder),
            subfolder="unet",
            torch_dtype=dtype,
            local_files_only=True,
            variant=weights_variant(folder / "unet", DIFFUSERS_WEIGHTS),
        )
        vae = None
        if (folder / "vae").is_dir():
            vae = AutoencoderKL.from_pretrained(
                str(folder),
                subfolder="vae",
                torch_dtype=dtype,
                local_files_only=True,
                variant=weights_variant(folder / "vae", DIFFUSERS_WEIGHTS),
            )
        scheduler_config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
        scheduler = DDPMScheduler.from_config(scheduler_config)
    except Exception as err:  # any loader failure becomes one readable line
        raise DreamerError(f"model '{name}' could not be loaded from {folder}: {first_line(err)}") from err
    if vae is None and unet.config.in_channels != 3:
        raise DreamerError(
            f"model '{name}' has no vae/ but its UNet takes {unet.config.in_channels} channels, "
            "not 3 (pixels)"
        )
    for module in (unet, vae):
        if module is not None:
            module.requires_grad_(False).eval().to(device)
    return DiffusersPrior(
        name=name,
        folder=folder,
        revision=revision,
        unet=unet,
        vae=vae,
        alphas_cumprod=scheduler.alphas_cumprod,
        prediction_type=scheduler_config.get("prediction_type", "epsilon"),
        device=device,
        dtype=dtype,
        cache_dir=Path(cache_dir),
        keep_text_encoder=keep_text_encoder,
    )


def _load_text_parts(
    name: str, folder: Path, device: torch.device, dtype: torch.dtype
) -> tuple[nn.Module, Any]:
    import transformers

    try:
        config = transformers.AutoConfig.from_pretrained(str(folder / "text_encoder"), local_files_only=True)
        arch = (config.architectures or ["CLIPTextModel"])[0]
        encoder_cls = getattr(transformers, arch, transformers.CLIPTextModel)
        encoder = encoder_cls.from_pretrained(
            str(folder / "text_encoder"),
            dtype=dtype,
            local_files_only=True,
            variant=weights_variant(folder / "text_encoder", TRANSFORMERS_WEIGHTS),
        )
        tokenizer = transformers.AutoTokenizer.from_pretrained(
            str(folder / "tokenizer"), local_files_only=True
        )
    except Exception as err:  # any loader failure becomes one readable line
        raise DreamerError(f"model '{name}': text encoder could not be loaded: {first_line(err)}") from err
    encoder.requires_grad_(False).eval().to(device)
    return encoder, tokenizer


def _model_index(folder: Path) -> dict:
    """The folder's model_index.json ({} when absent or unreadable: it is optional here)."""
    try:
        return json.loads((folder / "model_index.json").read_text())
    except (OSError, ValueError):
        return {}


def _diffusers_class(sub: Path, default: str) -> Any:
    import diffusers

    class_name = json.loads((sub / "config.json").read_text()).get("_class_name", default)
    return getattr(diffusers, class_name, getattr(diffusers, default))
