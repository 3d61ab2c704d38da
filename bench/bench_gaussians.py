"""Time the Gaussian splatting renderer (forward, forward+backward, peak memory).

Run: ``python -m bench.bench_gaussians [--repeats 3]``. Writes
``bench/results/gaussians_<device>.json`` (device = "cpu" or the GPU's name). The scene is a
typical SDS object: N Gaussians in a ball of radius 0.8, scales 0.01-0.03, C cameras on a ring
at distance 2.5, fovy 45.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import platform
import resource
import time
from pathlib import Path

import torch

from renderers.gaussians import rasterize_gaussians

SETTINGS = [(5_000, 64, 4), (20_000, 128, 4), (20_000, 128, 1), (50_000, 256, 1)]


def scene(n: int, size: int, C: int, device: str) -> dict[str, torch.Tensor]:
    """Deterministic object-like scene and cameras, the inputs of ``rasterize_gaussians``."""
    g = torch.Generator().manual_seed(0)
    d = torch.randn(n, 3, generator=g)
    means = d / d.norm(dim=1, keepdim=True) * 0.8 * torch.rand(n, 1, generator=g) ** (1 / 3)
    vms = []
    for i in range(C):
        az = 2 * math.pi * i / C
        eye = torch.tensor([2.5 * math.sin(az), 0.5, 2.5 * math.cos(az)])
        fwd = -eye / eye.norm()
        right = torch.linalg.cross(fwd, torch.tensor([0.0, 1.0, 0.0]))
        right = right / right.norm()
        R = torch.stack([right, -torch.linalg.cross(right, fwd), fwd])
        vm = torch.eye(4)
        vm[:3, :3], vm[:3, 3] = R, -R @ eye
        vms.append(vm)
    f = 0.5 * size / math.tan(math.radians(22.5))
    out = dict(
        means=means,
        quats=torch.randn(n, 4, generator=g),
        scales=torch.rand(n, 3, generator=g) * 0.02 + 0.01,
        opacities=torch.rand(n, generator=g) * 0.9 + 0.05,
        colors=torch.rand(n, 3, generator=g),
        viewmats=torch.stack(vms),
        Ks=torch.tensor([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1.0]]).expand(C, 3, 3).clone(),
        backgrounds=torch.ones(C, 3),
    )
    return {k: v.to(device) for k, v in out.items()}


def _rss_mib() -> float:
    """Current resident set size (Linux), the baseline for the peak-RSS delta."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def bench_one(n: int, size: int, C: int, backend: str, device: str, repeats: int) -> dict[str, float]:
    """Best-of-``repeats`` forward and forward+backward seconds, and peak memory in MiB."""
    s = scene(n, size, C, device)
    for k in ("means", "quats", "scales", "opacities", "colors"):
        s[k].requires_grad_(True)
    fwd, fb, peak = math.inf, math.inf, 0.0
    rss0 = _rss_mib()
    for _ in range(repeats + 1):  # first call warms up (and builds gsplat's extension)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        _sync(device)
        t0 = time.perf_counter()
        with torch.no_grad():
            rasterize_gaussians(**s, width=size, height=size, backend=backend)
        _sync(device)
        t1 = time.perf_counter()
        r = rasterize_gaussians(**s, width=size, height=size, backend=backend)
        (r.rgb.sum() + r.depth.sum()).backward()
        _sync(device)
        t2 = time.perf_counter()
        if device == "cuda":
            peak = max(peak, torch.cuda.max_memory_allocated() / 2**20)
        fwd, fb = min(fwd, t1 - t0), min(fb, t2 - t1)
    if device == "cpu":
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss0
    visible = int((r.radii > 0).sum())
    return dict(
        N=n, size=size, C=C, backend=backend, forward_s=round(fwd, 4), forward_backward_s=round(fb, 4),
        peak_mem_mib=round(peak, 1), visible=visible,
    )  # fmt: skip


def main() -> None:
    """Run every setting on CPU (torch backend), or on CUDA (both backends) when present."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    backends = ["torch", "gsplat"] if device == "cuda" else ["torch"]
    rows = []
    for n, size, C in SETTINGS:
        for b in backends:
            # a fresh process per setting, so ru_maxrss is this setting's peak
            with mp.get_context("spawn").Pool(1) as pool:
                row = pool.apply(bench_one, (n, size, C, b, device, args.repeats))
            print(json.dumps(row))
            rows.append(row)
    name = torch.cuda.get_device_name().replace(" ", "_") if device == "cuda" else "cpu"
    out = Path(__file__).parent / "results" / f"gaussians_{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        machine=platform.processor() or platform.machine(),
        note="peak_mem_mib: CPU = peak RSS minus RSS before rendering (fresh process per row); "
        "CUDA = torch.cuda.max_memory_allocated. Timings are best of repeats.",
    )  # fmt: skip
    out.write_text(json.dumps(dict(meta=meta, results=rows), indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
