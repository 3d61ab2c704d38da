"""Where a diffusers model's files are, checked without importing torch or diffusers.

``resolve_model`` turns an alias, hub id or folder into a complete local folder, or fails with
one DreamerError line; the CLI calls it before any heavy import so that missing weights are
reported within a second.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from dreamer.errors import DreamerError

#: the repository's assets/ (shipped models and demo meshes); the Docker image sets DREAMER_ASSETS
ASSETS_DIR = Path(os.environ.get("DREAMER_ASSETS", Path(__file__).resolve().parents[2] / "assets"))
#: the built-in shapes prior, trained by ``python -m dreamer.priors.shapes.train``
SHAPES_PRIOR_DIR = ASSETS_DIR / "shapes-prior"

#: short names accepted wherever a prior id is
PRIOR_ALIASES: dict[str, str] = {
    "shapes": str(SHAPES_PRIOR_DIR),
    "sd15": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "sd21": "stabilityai/stable-diffusion-2-1-base",
    "sd21-base": "stabilityai/stable-diffusion-2-1-base",
}

#: short names accepted wherever a normal estimator id is (``dreamer.normals.marigold``)
NORMAL_ALIASES: dict[str, str] = {
    "marigold": "prs-eth/marigold-normals-v1-1",
}

#: what is fetched when a hub model is downloaded (weights as safetensors only, no EMA/ckpt files)
_HUB_PATTERNS = [
    "model_index.json",
    "*/*.json",
    "*/*.txt",
    "unet/diffusion_pytorch_model*.safetensors",
    "vae/diffusion_pytorch_model*.safetensors",
    "text_encoder/model*.safetensors",
]
DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model",)
TRANSFORMERS_WEIGHTS = ("model", "pytorch_model")
_TRUE = {"1", "ON", "YES", "TRUE"}


def resolve_model(
    name_or_path: str,
    aliases: Mapping[str, str] = PRIOR_ALIASES,
    *,
    role: str = "prior",
    pass_folder: str = "pass --prior",
    download: bool = True,
) -> tuple[str, Path, str | None]:
    """(name, local folder, revision) for an alias, hub id or folder, without touching the network
    when ``HF_HUB_OFFLINE`` is set.

    A hub id resolves to its snapshot folder in the Hugging Face cache, and its revision is the
    snapshot's commit hash; a local folder's revision is a digest of its config files and the
    sizes of its weight files. Also checks that the folder has every component (cheap, no
    weights are read), so callers can fail fast before heavy work.

    Every diffusers model with a UNet, a CLIP text encoder and tokenizer, a scheduler and
    optionally a VAE goes through here (priors, Marigold); ``aliases`` is that kind's short-name
    table, and ``role``/``pass_folder`` word the error lines ("prior ... is a file", "or pass
    --prior /path/to/local/folder") so each names the option the user actually has. With
    ``download=False`` a model missing from the cache is an error even when online (for optional
    models that must never trigger a multi-gigabyte download by themselves).
    """
    name = aliases.get(name_or_path, name_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        folder = path.resolve()
        _check_complete(str(folder), folder, pass_folder)
        return str(folder), folder, _folder_digest(folder)
    if name == str(SHAPES_PRIOR_DIR):
        raise DreamerError(
            f"the shapes prior is missing from {SHAPES_PRIOR_DIR}: restore assets/ from the repository "
            "or train it with `python -m dreamer.priors.shapes.train`"
        )
    if path.exists():
        raise DreamerError(f"{role} '{name}' is a file; expected a diffusers model folder or a hub id")
    if name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise DreamerError(
            f"model folder '{name}' does not exist (expected a diffusers folder or an owner/name hub id)"
        )

    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    hub_cache = _hub_cache_dir()
    try:
        folder = Path(snapshot_download(name, cache_dir=hub_cache, local_files_only=True))
    except HFValidationError as err:
        raise DreamerError(f"{role} '{name}' is neither a local folder nor a valid hub id") from err
    except LocalEntryNotFoundError:
        if _offline() or not download:
            raise DreamerError(
                f"model '{name}' is not available offline: download it once (`hf download {name}`) "
                f"into the Hugging Face cache (HF_HOME / HF_HUB_CACHE), or {pass_folder} /path/to/local/folder"
            ) from None
        try:
            folder = Path(snapshot_download(name, cache_dir=hub_cache, allow_patterns=_HUB_PATTERNS))
        except Exception as err:  # network, auth, not found: all one line
            raise DreamerError(f"model '{name}' could not be downloaded: {first_line(err)}") from err
    _check_complete(name, folder, pass_folder)
    return name, folder, folder.name


def _check_complete(name: str, folder: Path, pass_folder: str = "pass --prior") -> None:
    """Raise one line listing what a model folder lacks, before any loader sees it."""
    missing: list[str] = []
    parts = [
        ("unet", "config.json", DIFFUSERS_WEIGHTS),
        ("text_encoder", "config.json", TRANSFORMERS_WEIGHTS),
    ]
    if (folder / "vae").is_dir():
        parts.append(("vae", "config.json", DIFFUSERS_WEIGHTS))
    for sub, config, weights in parts:
        if not (folder / sub / config).is_file():
            missing.append(f"{sub}/{config}")
        if not _weight_files(folder / sub, weights):
            missing.append(f"{sub}/ weights")
    if not (folder / "scheduler" / "scheduler_config.json").is_file():
        missing.append("scheduler/scheduler_config.json")
    if not (folder / "tokenizer").is_dir() or not any((folder / "tokenizer").iterdir()):
        missing.append("tokenizer/")
    if missing:
        raise DreamerError(
            f"model '{name}' at {folder} is incomplete (missing {', '.join(missing)}): "
            f"re-download it or {pass_folder} a complete diffusers folder"
        )


def _weight_files(sub: Path, stems: tuple[str, ...]) -> list[Path]:
    if not sub.is_dir():
        return []
    return [
        p for p in sub.iterdir() if p.suffix in (".safetensors", ".bin") and p.name.split(".")[0].split("-")[0] in stems
    ]


def weights_variant(sub: Path, stems: tuple[str, ...]) -> str | None:
    """ "fp16" when only the fp16 variant of a component's weights is present, else None."""
    files = _weight_files(sub, stems)
    if any(len(p.name.split(".")) == 2 for p in files):
        return None
    variants = {p.name.split(".")[1].split("-")[0] for p in files if len(p.name.split(".")) == 3}
    return "fp16" if "fp16" in variants else None


def _folder_digest(folder: Path) -> str | None:
    """A short digest of a local model: config/tokenizer text files and weight file sizes."""
    h = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and ".cache" not in p.parts)
    for p in files:
        rel = p.relative_to(folder).as_posix()
        if p.suffix in (".json", ".txt"):
            h.update(rel.encode() + b"\0" + p.read_bytes() + b"\0")
        elif p.suffix in (".safetensors", ".bin"):
            h.update(f"{rel}\0{p.stat().st_size}\0".encode())
    return h.hexdigest()[:12] if files else None


def _hub_cache_dir() -> Path:
    """The hub cache, read from the environment now (the hub library reads it once at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _offline() -> bool:
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE or bool(constants.HF_HUB_OFFLINE)


def first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:300]
