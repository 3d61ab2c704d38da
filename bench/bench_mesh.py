"""Times the mesh renderer's forward (and backward) passes, torch backend and nvdiffrast side by side.

Settings: a 20k-face sphere at 512x512 (1 view), a 100k-face sphere at 256x256 (4 views), a
12-face cube at 512x512 (huge triangles) and a 100k-face UV rasterisation at 1024x1024 for baking.
Meshes are procedural (latitude-longitude spheres) so the run needs no assets.

Usage: ``python -m bench.bench_mesh [--device cpu|cuda] [--repeats N]``; writes
``bench/results/mesh_<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

from dreamer.cameras import orbit_cameras
from renderers.mesh import MeshRender, rasterize, rasterize_uv, render_mesh

RESULTS = Path(__file__).resolve().parent / "results"


def uv_sphere(n_faces: int, radius: float = 0.8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(vertices, faces, uvs) of a latitude-longitude sphere with about ``n_faces`` faces."""
    rings = max(2, int(round(math.sqrt(n_faces / 4))))
    segs = max(3, n_faces // (2 * rings))
    th = torch.linspace(0, math.pi, rings + 1)
    ph = torch.linspace(0, 2 * math.pi, segs + 1)
    t, p = torch.meshgrid(th, ph, indexing="ij")
    verts = torch.stack([t.sin() * p.sin(), t.cos(), t.sin() * p.cos()], -1).reshape(-1, 3) * radius
    uvs = torch.stack([p / (2 * math.pi), t / math.pi], -1).reshape(-1, 2)
    i, j = torch.meshgrid(torch.arange(rings), torch.arange(segs), indexing="ij")
    a = (i * (segs + 1) + j).reshape(-1)
    b, c, d = a + segs + 1, a + 1, a + segs + 2
    faces = torch.cat([torch.stack([a, b, c], -1), torch.stack([c, b, d], -1)])
    return verts, faces, uvs


def cube() -> tuple[torch.Tensor, torch.Tensor]:
    """A 12-face unit cube (8 shared vertices)."""
    v = torch.tensor([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    f = torch.tensor(
        [[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
         [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]]
    )  # fmt: skip
    return v, f


def timed(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median seconds of ``fn`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def _bench_setting(
    verts: torch.Tensor, faces: torch.Tensor, hw: tuple[int, int], C: int, be: str, repeats: int
) -> dict:
    """Timings of one scene with one backend: rasterize, render_mesh, render_mesh + backward."""
    H, W = hw
    device = verts.device
    cams = orbit_cameras(torch.linspace(10, 30, C), torch.linspace(20, 290, C), radius=2.2)
    mvp, w2c = cams.mvp(H, W).to(device), cams.w2c().to(device)
    pos = torch.einsum("cij,vj->cvi", mvp, torch.cat([verts, torch.ones_like(verts[:, :1])], -1))
    colours = torch.rand_like(verts)
    row: dict = {}
    rast = rasterize(pos, faces, (H, W), backend=be)
    row[f"{be}_coverage"] = float((rast[..., 3] > 0).float().mean())
    row[f"{be}_rasterize_s"] = timed(lambda: rasterize(pos, faces, (H, W), backend=be), repeats, device)

    def render(v: torch.Tensor) -> MeshRender:
        return render_mesh(v, faces, mvp, w2c, (H, W), vertex_colors=colours, backend=be)

    row[f"{be}_render_mesh_s"] = timed(lambda: render(verts), repeats, device)

    def fwd_bwd() -> None:
        out = render(verts.clone().requires_grad_(True))
        (out.rgb.sum() + out.depth.sum() + out.normal_world.sum()).backward()

    row[f"{be}_render_fwd_bwd_s"] = timed(fwd_bwd, repeats, device)
    return row


def run(device: torch.device, repeats: int) -> dict:
    """All settings on ``device``: a dict of results."""
    backends = ["torch"]
    if device.type == "cuda":
        try:
            import nvdiffrast.torch  # noqa: F401

            backends.append("nvdiffrast")
        except ImportError:
            pass
    settings = []
    for name, (verts, faces), (H, W), C in [
        ("sphere_20k_512_c1", uv_sphere(20_000)[:2], (512, 512), 1),
        ("sphere_100k_256_c4", uv_sphere(100_000)[:2], (256, 256), 4),
        ("cube_12_512_c1", cube(), (512, 512), 1),
    ]:
        row = {"name": name, "faces": int(faces.shape[0]), "resolution": [H, W], "views": C}
        for be in backends:
            row.update(_bench_setting(verts.to(device), faces.to(device), (H, W), C, be, repeats))
        settings.append(row)
        print(json.dumps(row))
    _, faces, uvs = uv_sphere(100_000)
    uv_row = {"name": "rasterize_uv_100k_1024", "faces": int(faces.shape[0]), "resolution": [1024, 1024]}
    uv_row["torch_rasterize_uv_s"] = timed(
        lambda: rasterize_uv(uvs.to(device), faces.to(device), (1024, 1024)), repeats, device
    )
    settings.append(uv_row)
    print(json.dumps(uv_row))
    info = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
    }
    return {"info": info, "settings": settings}


def main() -> None:
    """Command-line entry: run and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    device = torch.device(args.device)
    result = run(device, args.repeats)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"mesh_{device.type}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
