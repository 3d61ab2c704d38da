"""CUDA benchmark: Gaussian and mesh renderers (CUDA vs torch backends) and one SDS step on SD 2.1-base.

Run on a GPU machine from the repo root (``bench/gpu_check.sh`` does, after building gsplat and
nvdiffrast): ``python -m bench.gpu_bench``. Writes ``gpu_<gpu-name-slug>.json`` into ``--out``
(default ``$OUT`` when set, else ``bench/results``), rewritten after every section, so a run cut
short still leaves what it measured.

Sections:

* ``gaussians``: ``rasterize_gaussians`` with gsplat and with the torch backend, forward and
  forward+backward, 512x512, C=4 cameras, N in {20k, 100k} (the scene of ``bench_gaussians``),
  plus the max |difference| of rgb and alpha between the two backends on the same inputs.
* ``polish``: the polish stage (``run_polish``) on a ~80k-face noisy sphere with the oracle
  estimator, dreampolish settings (512 px, 4 views), seconds per step including the Large Steps
  solve on the CPU; the issue asks for this figure.
* ``mesh``: ``render_mesh`` with nvdiffrast and with the torch backend, 512x512, C=4, a ~100k-face
  sphere, forward and forward+backward, plus their agreement.
* ``sds``: SD 2.1-base's UNet and VAE built from its published config with RANDOM weights (no
  download), fp16: (i) a bare CFG forward of the UNet (2B latents 4x64x64, random text
  embeddings [77, 1024]) and (ii) a full SDS step on 3D Gaussians rendered at 512 px (render ->
  VAE encode with grad -> UNet CFG forward without grad -> reparametrised loss -> backward ->
  Adam), through the project's ``Gaussians``, ``DiffusersPrior``, ``SDS`` and
  ``sample_orbit_cameras``; the step's time is also given as a ratio to the bare forward.

Timing: CUDA events around each call after warm-up, median of the repeats (each repeat is
synchronised, so it is the latency of one call); peak memory is ``torch.cuda.max_memory_allocated``
during the timed repeats (absolute: models and inputs included; ``resident_mib`` is what was
allocated before). A repeat loop stops early after ``--max-s`` seconds, and the whole run keeps
to ``--budget-s``: measurements that would start after it are recorded as skipped.

``--smoke`` runs every section on the CPU with tiny sizes and tiny models, torch backends only, to
check the script without a GPU; it writes nothing unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.bench_gaussians import scene as gaussian_scene
from bench.bench_mesh import uv_sphere
from dreamer.cameras import orbit_cameras, sample_orbit_cameras
from renderers.gaussians import rasterize_gaussians
from renderers.mesh import render_mesh

RESULTS = Path(__file__).resolve().parent / "results"

# SD 2.1-base (stabilityai/stable-diffusion-2-1-base), unet/config.json and vae/config.json: the
# values that shape the networks, as published; the rest are diffusers 0.42 defaults, which
# equal the published ones. upcast_attention is left at its default (False): it changes the
# precision of the attention scores, not the architecture.
SD21_BASE_UNET: dict[str, Any] = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    center_input_sample=False,
    flip_sin_to_cos=True,
    freq_shift=0,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    mid_block_type="UNetMidBlock2DCrossAttn",
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    only_cross_attention=False,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    downsample_padding=1,
    mid_block_scale_factor=1,
    act_fn="silu",
    norm_num_groups=32,
    norm_eps=1e-5,
    cross_attention_dim=1024,
    attention_head_dim=(5, 10, 20, 20),
    dual_cross_attention=False,
    use_linear_projection=True,
)
SD21_BASE_VAE: dict[str, Any] = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    act_fn="silu",
    latent_channels=4,
    norm_num_groups=32,
    sample_size=512,
    scaling_factor=0.18215,
)
# SD's DDPM schedule (scheduler/scheduler_config.json); 2.1-base predicts epsilon.
SD_SCHEDULE: dict[str, Any] = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"
)

# --smoke: networks shaped like tests/tiny_models.py (latents 4x8x8, renders 64x64, text dim 16).
TINY_UNET: dict[str, Any] = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    block_out_channels=(8, 16),
    layers_per_block=1,
    norm_num_groups=4,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    cross_attention_dim=16,
    attention_head_dim=4,
)
TINY_VAE: dict[str, Any] = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(8, 8, 8, 8),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=4,
    sample_size=64,
)


@dataclass
class Sizes:
    """Problem sizes of one run (full GPU sizes, or tiny ones for --smoke)."""

    gaussian_counts: tuple[int, ...]
    image: int
    cameras: int
    mesh_faces: int
    sds_gaussians: int
    unet: dict[str, Any]
    vae: dict[str, Any]


FULL = Sizes((20_000, 100_000), 512, 4, 100_000, 20_000, SD21_BASE_UNET, SD21_BASE_VAE)
SMOKE = Sizes((300, 1_000), 48, 2, 2_000, 300, TINY_UNET, TINY_VAE)


def slug(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia_h100_80gb_hbm3'."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "unknown"


def first_line(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".strip()
    return text.splitlines()[0][:300] if text else type(err).__name__


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class Runner:
    """Times callables on one device within a wall-clock budget."""

    def __init__(self, device: torch.device, budget_s: float, repeats: int, max_s: float) -> None:
        self.device = device
        self.deadline = time.monotonic() + budget_s
        self.repeats = repeats
        self.max_s = max_s

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def measure(self, fn: Callable[[], object], warmup: int = 2) -> dict[str, Any]:
        """Median/min milliseconds of ``fn`` after warm-up, and peak memory while timing.

        Errors (out of memory above all) are caught and returned as ``{"error": ...}``.
        """
        if self.left() < 2.0:
            return {"skipped": "time budget spent"}
        try:
            t0 = time.perf_counter()
            fn()
            self.sync()
            first = time.perf_counter() - t0
            for _ in range(warmup - 1 if first < 1.0 else 0):  # a slow call is warm after one run
                fn()
            self.sync()
            resident = torch.cuda.memory_allocated(self.device) if self.cuda else 0
            if self.cuda:
                torch.cuda.reset_peak_memory_stats(self.device)
            times: list[float] = []
            start = time.perf_counter()
            for _ in range(self.repeats):
                if self.cuda:
                    e0 = torch.cuda.Event(enable_timing=True)
                    e1 = torch.cuda.Event(enable_timing=True)
                    e0.record()
                    fn()
                    e1.record()
                    e1.synchronize()
                    times.append(e0.elapsed_time(e1))
                else:
                    t = time.perf_counter()
                    fn()
                    times.append((time.perf_counter() - t) * 1000.0)
                spent = time.perf_counter() - start
                if spent > self.max_s or self.left() < 1.0:
                    break
        except Exception as err:  # OOM and kernel errors become one line in the results
            _free()
            return {"error": first_line(err)}
        times.sort()
        row: dict[str, Any] = {
            "median_ms": round(times[len(times) // 2], 3),
            "min_ms": round(times[0], 3),
            "repeats": len(times),
            "first_call_ms": round(first * 1000.0, 1),
        }
        if self.cuda:
            row["peak_mib"] = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
            row["resident_mib"] = round(resident / 2**20, 1)
        return row


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max()) if a.numel() else 0.0


# ----------------------------------------------------------------------------- Gaussians
def bench_gaussians(run: Runner, n: int, size: int, C: int, backends: list[str]) -> dict[str, Any]:
    """Forward and forward+backward of each backend on one scene, and the backends' agreement."""
    s = gaussian_scene(n, size, C, str(run.device))
    params = ("means", "quats", "scales", "opacities", "colors")
    for k in params:
        s[k].requires_grad_(True)
    row: dict[str, Any] = {"N": n, "size": size, "C": C}
    outputs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for be in backends:

        def forward(be: str = be) -> Any:
            with torch.no_grad():
                return rasterize_gaussians(**s, width=size, height=size, backend=be)

        def forward_backward(be: str = be) -> None:
            for k in params:
                s[k].grad = None
            r = rasterize_gaussians(**s, width=size, height=size, backend=be)
            (r.rgb.sum() + r.alpha.sum() + 0.1 * r.depth.sum()).backward()

        row[be] = {"forward": run.measure(forward), "forward_backward": run.measure(forward_backward)}
        if "error" not in row[be]["forward"] and "skipped" not in row[be]["forward"]:
            try:
                r = forward()
                outputs[be] = (r.rgb.detach(), r.alpha.detach())
                row[be]["visible"] = int((r.radii > 0).sum())
                row[be]["coverage"] = round(float((r.alpha > 0.5).float().mean()), 4)
                del r
            except Exception as err:
                row[be]["output_error"] = first_line(err)
        _free()
    if "torch" in outputs:
        ref_rgb, ref_alpha = outputs["torch"]
        for be, (rgb, alpha) in outputs.items():
            row[be]["max_abs_diff_vs_torch"] = {"rgb": _max_abs(rgb, ref_rgb), "alpha": _max_abs(alpha, ref_alpha)}
    for be in backends:
        if be != "torch" and "torch" in row and be in row:
            a, b = row["torch"]["forward_backward"], row[be]["forward_backward"]
            if "median_ms" in a and "median_ms" in b:
                row[f"speedup_{be}_vs_torch_fwd_bwd"] = round(a["median_ms"] / b["median_ms"], 2)
    return row


# ----------------------------------------------------------------------------- mesh
def bench_mesh(run: Runner, n_faces: int, size: int, C: int, backends: list[str]) -> dict[str, Any]:
    """render_mesh forward and forward+backward per backend on a UV sphere, and the agreement."""
    verts, faces, _ = uv_sphere(n_faces)
    verts, faces = verts.to(run.device), faces.to(run.device)
    cams = orbit_cameras(torch.linspace(10, 30, C), torch.linspace(20, 290, C), radius=2.2)
    mvp, w2c = cams.mvp(size, size).to(run.device), cams.w2c().to(run.device)
    colours = torch.rand(verts.shape, generator=torch.Generator().manual_seed(0)).to(run.device)
    row: dict[str, Any] = {"faces": int(faces.shape[0]), "size": size, "C": C}
    outputs: dict[str, Any] = {}
    for be in backends:

        def forward(be: str = be) -> Any:
            with torch.no_grad():
                return render_mesh(verts, faces, mvp, w2c, (size, size), vertex_colors=colours, backend=be)

        def forward_backward(be: str = be) -> None:
            v = verts.clone().requires_grad_(True)
            c = colours.clone().requires_grad_(True)
            out = render_mesh(v, faces, mvp, w2c, (size, size), vertex_colors=c, backend=be)
            (out.rgb.sum() + out.depth.sum() + out.normal_world.sum()).backward()

        row[be] = {"forward": run.measure(forward), "forward_backward": run.measure(forward_backward)}
        if "median_ms" in row[be]["forward"]:
            try:
                o = forward()
                outputs[be] = (o.rgb, o.alpha, o.depth, o.triangle_id)
                row[be]["coverage"] = round(float(o.alpha.mean()), 4)
            except Exception as err:
                row[be]["output_error"] = first_line(err)
        _free()
    if "torch" in outputs:
        rgb0, a0, d0, id0 = outputs["torch"]
        for be, (rgb, a, d, tid) in outputs.items():
            same = (tid == id0) & (id0 >= 0)
            row[be]["agreement_vs_torch"] = {
                "alpha_mismatch_frac": round(float((a != a0).float().mean()), 6),
                "triangle_id_match_frac": round(float((tid == id0).float().mean()), 6),
                "rgb_max_abs_same_triangle": _max_abs(rgb[same], rgb0[same]),
                "depth_max_abs_same_triangle": _max_abs(d[..., 0][same], d0[..., 0][same]),
            }
    for be in backends:
        if be != "torch" and be in row and "torch" in row:
            a, b = row["torch"]["forward_backward"], row[be]["forward_backward"]
            if "median_ms" in a and "median_ms" in b:
                row[f"speedup_{be}_vs_torch_fwd_bwd"] = round(a["median_ms"] / b["median_ms"], 2)
    return row


# ----------------------------------------------------------------------------- SDS
def _build_networks(sizes: Sizes, device: torch.device, dtype: torch.dtype, channels_last: bool) -> tuple[Any, Any]:
    """Random-weight UNet and VAE from config dicts, built directly on ``device``, frozen, in ``dtype``."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # no "cast with torch_dtype instead" advice for random weights
    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel(**sizes.unet)
        vae = AutoencoderKL(**sizes.vae)
    for m in (unet, vae):
        m.requires_grad_(False).eval().to(dtype=dtype)
        if channels_last:
            m.to(memory_format=torch.channels_last)
    return unet, vae


def bench_sds(run: Runner, sizes: Sizes, args: argparse.Namespace, gsplat_ok: bool) -> dict[str, Any]:
    """(i) bare UNet CFG forward, (ii) a full SDS step on Gaussians, (iii) VAE encode fwd+bwd alone."""
    import diffusers
    from diffusers import DDPMScheduler

    import dreamer.representations.gaussians as gaussians_mod
    from dreamer.objectives.sds import SDS, SDSConfig
    from dreamer.priors.base import Prompt, Views, view_dependent_texts
    from dreamer.priors.diffusers_prior import DiffusersPrior
    from dreamer.representations.gaussians import Gaussians

    dev = run.device
    dtype = torch.float16 if run.cuda else torch.float32
    B = sizes.cameras
    out: dict[str, Any] = {"dtype": str(dtype).removeprefix("torch."), "views": B, "diffusers": diffusers.__version__}
    out["channels_last"] = bool(args.channels_last)
    t0 = time.perf_counter()
    unet, vae = _build_networks(sizes, dev, dtype, args.channels_last)
    out["build_s"] = round(time.perf_counter() - t0, 2)
    out["unet_params"] = sum(p.numel() for p in unet.parameters())
    out["vae_params"] = sum(p.numel() for p in vae.parameters())
    s, D = int(unet.config.sample_size), int(unet.config.cross_attention_dim)
    g = torch.Generator().manual_seed(0)

    # (i) the bare CFG forward: one UNet call on 2B samples, as DiffusersPrior.predict_noise makes
    x = torch.randn(2 * B, 4, s, s, generator=g).to(dev, dtype)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    t = torch.randint(20, 980, (2 * B,), generator=g).to(dev)
    emb = torch.randn(2 * B, 77, D, generator=g).to(dev, dtype)

    def bare() -> torch.Tensor:
        with torch.no_grad():
            return unet(x, t, encoder_hidden_states=emb, return_dict=False)[0]

    out["unet_cfg_forward"] = run.measure(bare, warmup=3)
    try:
        out["unet_cfg_forward"]["output_finite"] = bool(torch.isfinite(bare()).all())
    except Exception as err:
        out["unet_cfg_forward"]["output_error"] = first_line(err)

    # (ii) the full step, through the project's classes
    tmp = Path(tempfile.mkdtemp(prefix="gpu_bench_"))
    prior = DiffusersPrior(
        name="sd21-base-architecture-random-weights",
        folder=tmp,
        revision=None,
        unet=unet,
        vae=vae,
        alphas_cumprod=DDPMScheduler(**SD_SCHEDULE).alphas_cumprod,
        prediction_type="epsilon",
        device=dev,
        dtype=dtype,
        cache_dir=tmp,
    )
    keys = [*view_dependent_texts("x"), "plain", "uncond"]
    prompt = Prompt(text="random", embeddings={k: torch.randn(77, D, generator=g).to(dev, dtype) for k in keys})
    objective = SDS(prior, SDSConfig())
    res = prior.image_size
    out["render_size"] = res
    gaussians = Gaussians.blob(sizes.sds_gaussians, (0.6, 0.6, 0.6), g, opacity=0.3).to(dev)
    out["gaussians"] = len(gaussians)
    optimiser = torch.optim.Adam(gaussians.parameters(), lr=1e-3)
    step_gen = torch.Generator().manual_seed(1)
    background = torch.ones(B, 3)
    renderer = "torch"
    saved = gaussians_mod.rasterize_gaussians
    if run.cuda:
        renderer = "gsplat" if gsplat_ok else "torch"
        if not gsplat_ok:  # Gaussians.render picks gsplat for CUDA tensors; force the torch backend

            def forced(*a: Any, **kw: Any) -> Any:
                return saved(*a, **{**kw, "backend": "torch"})

            gaussians_mod.rasterize_gaussians = forced
    out["renderer"] = renderer
    state = {"step": 0, "finite": True}

    def sds_step() -> None:
        cams = sample_orbit_cameras(B, step_gen)
        rendered = gaussians.render(cams, res, res, background)
        o = objective(rendered.rgb, Views(cameras=cams, background=background), prompt, state["step"], 1000, step_gen)
        optimiser.zero_grad(set_to_none=True)
        o.loss.backward()
        optimiser.step()
        state["step"] += 1
        state["finite"] = state["finite"] and math.isfinite(o.grad_norm)

    try:
        out["sds_step"] = run.measure(sds_step, warmup=2)
        out["sds_step"]["grad_norm_finite"] = state["finite"]
        out["sds_step"]["params_finite"] = bool(all(torch.isfinite(p).all() for p in gaussians.parameters()))
    finally:
        gaussians_mod.rasterize_gaussians = saved

    # (iii) the VAE encoder with gradients alone (the step's other big network cost)
    images = torch.rand(B, res, res, 3, generator=g).to(dev).requires_grad_(True)

    def encode_fwd_bwd() -> None:
        images.grad = None
        prior.encode(images).square().mean().backward()

    out["vae_encode_forward_backward"] = run.measure(encode_fwd_bwd, warmup=2)
    a, b = out["unet_cfg_forward"], out["sds_step"]
    if "median_ms" in a and "median_ms" in b:
        out["sds_step_over_unet_cfg_forward"] = round(b["median_ms"] / a["median_ms"], 2)
    return out


# ----------------------------------------------------------------------------- driver
def _reference_context(cfg: Any, device: torch.device, folder: Path, prompt: str = "a sphere") -> Any:
    """A RunContext whose prior is the reference prior of a unit-ish sphere saved in ``folder``."""
    import trimesh

    from dreamer.export.mesh_export import save_glb
    from dreamer.representations.mesh import TexturedMesh
    from dreamer.stages.context import RunContext

    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.6)
    path = save_glb(TexturedMesh(sphere.vertices, sphere.faces), folder / "sphere.glb")
    out = folder / "run"
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    return RunContext(
        out=out, cfg=cfg, prompt=prompt, negative="", seed=0, device=device, prior_spec=f"reference:{path}"
    )


def bench_polish(device: torch.device, smoke: bool) -> dict[str, Any]:
    """Seconds per polish step at the dreampolish preset's sizes (oracle estimator)."""
    import tempfile

    import numpy as np
    import trimesh

    from dreamer.presets import load_preset
    from dreamer.representations.mesh import TexturedMesh
    from dreamer.stages.polish import run_polish

    steps = 3 if smoke else 20
    preset = "cpu" if smoke else "dreampolish"
    overrides = {"polish.steps": steps, "polish.estimator": "oracle", "polish.max_seconds": None}
    if smoke:
        overrides["polish.resolution"] = 48
    cfg = load_preset(preset, overrides)
    sphere = trimesh.creation.icosphere(subdivisions=4 if smoke else 6, radius=0.6)
    rng = np.random.default_rng(0)
    noisy = TexturedMesh(sphere.vertices * (1 + rng.normal(0, 0.01, (len(sphere.vertices), 1))), sphere.faces)
    with tempfile.TemporaryDirectory() as tmp:
        ctx = _reference_context(cfg, device, Path(tmp))
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        run_polish(ctx, noisy)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        wall = time.perf_counter() - t0
    result: dict[str, Any] = {
        "preset": preset,
        "faces": int(len(sphere.faces)),
        "resolution": cfg.polish.resolution,
        "views": cfg.polish.batch_size,
        "steps": steps,
        "seconds_per_step": round(wall / steps, 4),
        "normal_error": [
            ctx.stage_info["polish"].get("normal_error_start"),
            ctx.stage_info["polish"].get("normal_error_end"),
        ],
    }
    if device.type == "cuda":
        result["peak_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return result


def bench_progressive(device: torch.device, smoke: bool) -> dict[str, Any]:
    """Seconds per step and peak memory of the NeRF, NeuS and DMTet stages at 512 px (one view
    per step; the dreampolish preset otherwise), each started from the previous one's result."""
    import tempfile

    from dreamer.presets import load_preset
    from dreamer.stages.dmtet import run_dmtet
    from dreamer.stages.nerf import run_nerf
    from dreamer.stages.neus import run_neus

    steps = 2 if smoke else 6
    res = 32 if smoke else 512
    overrides: dict[str, Any] = {}
    for stage in ("nerf", "neus", "dmtet"):
        overrides |= {f"{stage}.steps": steps, f"{stage}.resolution": res, f"{stage}.batch_size": 1}
    if smoke:
        overrides |= {"nerf.isosurface.resolution": 48, "neus.init.resolution": 48, "neus.init.steps": 10}
        overrides |= {"neus.isosurface_resolution": 48, "dmtet.grid_resolution": 16, "nerf.isosurface.level": 3.0}
    cfg = load_preset("dreampolish-cpu" if smoke else "dreampolish", overrides)
    result: dict[str, Any] = {"resolution": res, "views": 1, "steps": steps}
    with tempfile.TemporaryDirectory() as tmp:
        ctx = _reference_context(cfg, device, Path(tmp))
        stages = (
            ("nerf", lambda _: run_nerf(ctx)),
            ("neus", lambda f: run_neus(ctx, f)),
            ("dmtet", lambda f: run_dmtet(ctx, f)),
        )
        previous = None
        for name, run_stage in stages:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            try:
                previous, _ = run_stage(previous)
            except Exception as err:  # an OOM at 512 px is a result worth recording
                result[name] = {"error": first_line(err)}
                break
            result[name] = {"seconds_per_step": ctx.stage_info[name].get("seconds_per_step")}
            if device.type == "cuda":
                result[name]["peak_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return result


def _available(module: str, device: torch.device) -> tuple[bool, str]:
    """Whether a CUDA backend can run here: imported and its extension loaded."""
    if device.type != "cuda":
        return False, "not on CUDA"
    try:
        if module == "gsplat":
            from gsplat.cuda._backend import _C

            if _C is None:
                return False, "gsplat's CUDA extension did not build"
        else:
            import nvdiffrast.torch as dr

            dr.RasterizeCudaContext(device=device)
        return True, "ok"
    except Exception as err:
        return False, first_line(err)


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU, torch backends only")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default $OUT, else bench/results)")
    ap.add_argument("--budget-s", type=float, default=300.0, help="wall-clock budget for all measurements")
    ap.add_argument("--repeats", type=int, default=10, help="timed calls per measurement (at most)")
    ap.add_argument("--max-s", type=float, default=4.0, help="stop a measurement's repeats after this long")
    ap.add_argument("--sections", default="gaussians,mesh,polish,progressive,sds", help="comma-separated subset to run")
    ap.add_argument("--no-gsplat", action="store_true", help="skip the gsplat backend")
    ap.add_argument("--no-nvdiffrast", action="store_true", help="skip the nvdiffrast backend")
    ap.add_argument("--channels-last", action="store_true", help="UNet and VAE in channels-last memory format")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.smoke:
        device, sizes = torch.device("cpu"), SMOKE
    elif torch.cuda.is_available():
        device, sizes = torch.device("cuda", torch.cuda.current_device()), FULL
    else:
        sys.exit("gpu_bench: no CUDA device; use --smoke to check the script on the CPU")
    out_dir = args.out
    if out_dir is None and not args.smoke:
        out_dir = Path(os.environ["OUT"]) if os.environ.get("OUT") else RESULTS
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    path = None if out_dir is None else Path(out_dir) / f"gpu_{slug(name)}.json"

    run = Runner(device, args.budget_s, args.repeats, args.max_s)
    gsplat_ok, gsplat_note = (False, "disabled") if args.no_gsplat else _available("gsplat", device)
    nvdr_ok, nvdr_note = (False, "disabled") if args.no_nvdiffrast else _available("nvdiffrast", device)
    meta: dict[str, Any] = {
        "gpu": name,
        "smoke": bool(args.smoke),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "gsplat": {"version": _version("gsplat"), "usable": gsplat_ok, "note": gsplat_note},
        "nvdiffrast": {"version": _version("nvdiffrast"), "usable": nvdr_ok, "note": nvdr_note},
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "args": {k: str(v) for k, v in vars(args).items()},
        "timing": "median of CUDA-event-timed calls after warm-up; each call synchronised",
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        meta["capability"] = f"{props.major}.{props.minor}"
        meta["multiprocessors"] = props.multi_processor_count
        meta["memory_gib"] = round(props.total_memory / 2**30, 1)
    else:
        meta["threads"] = torch.get_num_threads()
    report: dict[str, Any] = {"meta": meta, "gaussians": [], "mesh": [], "polish": {}, "sds": {}}

    def save() -> None:
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        os.replace(tmp, path)

    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    g_backends = ["torch"] + (["gsplat"] if gsplat_ok else [])
    m_backends = ["torch"] + (["nvdiffrast"] if nvdr_ok else [])
    # cheapest and most wanted first; the torch backend's 100k-Gaussian scene (O(pairs) memory) last
    tasks: list[tuple[str, Callable[[], Any]]] = []
    if "gaussians" in sections:
        n0 = sizes.gaussian_counts[0]
        tasks.append(("gaussians", lambda: bench_gaussians(run, n0, sizes.image, sizes.cameras, g_backends)))
    if "mesh" in sections:
        tasks.append(("mesh", lambda: bench_mesh(run, sizes.mesh_faces, sizes.image, sizes.cameras, m_backends)))
    if "polish" in sections:
        tasks.append(("polish", lambda: bench_polish(device, args.smoke)))
    if "progressive" in sections:
        tasks.append(("progressive", lambda: bench_progressive(device, args.smoke)))
    if "sds" in sections:
        tasks.append(("sds", lambda: bench_sds(run, sizes, args, gsplat_ok)))
    if "gaussians" in sections:
        for n in sizes.gaussian_counts[1:]:
            tasks.append(("gaussians", lambda n=n: bench_gaussians(run, n, sizes.image, sizes.cameras, g_backends)))
    for section, task in tasks:
        t0 = time.perf_counter()
        print(f"[gpu_bench] {section} ...", flush=True)
        try:
            result = task() if run.left() > 2.0 else {"skipped": "time budget spent"}
        except Exception as err:
            traceback.print_exc()
            result = {"error": first_line(err)}
            _free()
        if isinstance(result, dict):
            result["section_s"] = round(time.perf_counter() - t0, 1)
        _free()  # the section's tensors died with its frame
        if section in ("sds", "polish", "progressive"):
            report[section] = result
        else:
            report[section].append(result)
        print(json.dumps(result), flush=True)
        save()
    print_summary(report)
    if path is not None:
        print(f"[gpu_bench] wrote {path}")
    return report


def _ms(d: dict[str, Any] | None) -> str:
    if not isinstance(d, dict):
        return "-"
    if "median_ms" in d:
        mem = f" {d['peak_mib']:.0f}MiB" if "peak_mib" in d else ""
        return f"{d['median_ms']:.2f}ms{mem}"
    return str(d.get("error") or d.get("skipped") or "-")[:40]


def _splat_agreement(r: dict[str, Any]) -> str:
    diff = r.get("max_abs_diff_vs_torch", {})
    return f"max|d| rgb {diff.get('rgb', '-')} alpha {diff.get('alpha', '-')}"


def _raster_agreement(r: dict[str, Any]) -> str:
    return f"alpha mismatch {r.get('agreement_vs_torch', {}).get('alpha_mismatch_frac', '-')}"


def _print_renderer_rows(
    rows: list[dict[str, Any]],
    kind: str,
    size_label: str,
    size_key: str,
    backends: tuple[str, ...],
    width: int,
    compare: Callable[[dict[str, Any]], str],
) -> None:
    """One summary line per problem size and backend of a renderer section, then the row's error."""
    for row in rows:
        for be in backends:
            if be in row:
                r = row[be]
                print(
                    f"{kind} {size_label}{row.get(size_key)} {row.get('size')}px C={row.get('C')} {be:{width}s} "
                    f"fwd {_ms(r.get('forward'))} | fwd+bwd {_ms(r.get('forward_backward'))} | {compare(r)}"
                )
        if "error" in row or "skipped" in row:
            print(f"{kind}: {row.get('error') or row.get('skipped')}")


def print_summary(report: dict[str, Any]) -> None:
    """A short table (the device tool returns only the end of the output)."""
    meta = report["meta"]
    print(f"\n== gpu_bench summary: {meta['gpu']} (torch {meta['torch']}, cuda {meta['cuda']})")
    _print_renderer_rows(
        report["gaussians"],
        "gaussians",
        "N=",
        "N",
        ("torch", "gsplat"),
        7,
        _splat_agreement,
    )
    _print_renderer_rows(
        report["mesh"],
        "mesh",
        "F=",
        "faces",
        ("torch", "nvdiffrast"),
        10,
        _raster_agreement,
    )
    polish = report.get("polish") or {}
    if polish:
        print(
            f"polish: {polish.get('seconds_per_step', polish.get('error', '-'))} s/step "
            f"({polish.get('faces')} faces, {polish.get('views')} x {polish.get('resolution')} px)"
        )
    progressive = report.get("progressive") or {}
    for stage in ("nerf", "neus", "dmtet"):
        if stage in progressive:
            r = progressive[stage]
            print(f"{stage}: {r.get('seconds_per_step', r.get('error', '-'))} s/step at {progressive['resolution']} px")
    sds = report["sds"]
    if sds:
        print(
            f"sds ({sds.get('dtype')}, B={sds.get('views')}, renderer {sds.get('renderer')}): "
            f"unet cfg fwd {_ms(sds.get('unet_cfg_forward'))} | step {_ms(sds.get('sds_step'))} | "
            f"vae enc fwd+bwd {_ms(sds.get('vae_encode_forward_backward'))} | "
            f"step/fwd {sds.get('sds_step_over_unet_cfg_forward', '-')}"
        )
        if "error" in sds or "skipped" in sds:
            print(f"sds: {sds.get('error') or sds.get('skipped')}")


if __name__ == "__main__":
    main()
