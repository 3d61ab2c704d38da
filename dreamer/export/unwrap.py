"""UV unwrapping with xatlas, run in a child process.

xatlas is native code that can crash the whole interpreter (segfault) or run for very long on
bad meshes (non-manifold, millions of faces); a child process turns both into a DreamerError
instead of killing the caller. The parent and the worker exchange .npz files in a temp folder.

Worker usage (internal): ``python -m dreamer.export.unwrap IN.npz OUT.npz``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from dreamer.errors import DreamerError

# Set by tests to check that a crashing worker becomes a DreamerError.
_CRASH_ENV = "DREAMER_UNWRAP_TEST_CRASH"
_REPO_ROOT = Path(__file__).resolve().parents[2]


def _run_xatlas(
    vertices: np.ndarray, faces: np.ndarray, resolution: int, padding: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The actual xatlas call (inside the worker). Returns (vmapping, indices, uvs)."""
    import xatlas

    atlas = xatlas.Atlas()
    atlas.add_mesh(vertices.astype(np.float32), faces.astype(np.uint32))
    chart_options = xatlas.ChartOptions()
    pack_options = xatlas.PackOptions()
    pack_options.resolution = int(resolution)
    pack_options.padding = int(padding)  # texels between charts, so bilinear taps do not mix charts
    pack_options.bilinear = True
    pack_options.blockAlign = True
    pack_options.bruteForce = False
    atlas.generate(chart_options, pack_options)
    vmapping, indices, uvs = atlas[0]
    return vmapping.astype(np.int64), indices.astype(np.int64).reshape(-1, 3), uvs.astype(np.float32)


def _worker(in_path: str, out_path: str) -> None:
    if os.environ.get(_CRASH_ENV) == "1":
        os.abort()  # stands in for a native segfault
    data = np.load(in_path)
    vmapping, faces, uvs = _run_xatlas(
        data["vertices"], data["faces"], int(data["resolution"]), int(data["padding"])
    )
    tmp = out_path + ".part.npz"
    np.savez(tmp, vmapping=vmapping, faces=faces, uvs=uvs)
    os.replace(tmp, out_path)


def unwrap_uv(
    vertices: np.ndarray,
    faces: np.ndarray,
    resolution: int = 1024,
    padding: int | None = None,
    timeout_s: float = 300.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unwrap a triangle mesh into a texture atlas of ``resolution`` texels per side.

    Returns ``(vmapping [V'], new_faces [F, 3], uvs [V', 2])``: new vertex i is old vertex
    ``vmapping[i]`` (split along chart seams), faces are in the same order as the input, and uvs
    lie in [0, 1] and are read in glTF's convention (v = 0 at the top row of the image).
    ``padding`` defaults to ~4 texels at 1024 (scaled with the resolution, at least 2).
    Raises DreamerError when xatlas crashes or exceeds ``timeout_s``.
    """
    vertices = np.ascontiguousarray(vertices, dtype=np.float32).reshape(-1, 3)
    faces = np.ascontiguousarray(faces, dtype=np.int64).reshape(-1, 3)
    if len(faces) == 0:
        raise DreamerError("cannot unwrap UVs of a mesh without faces; check the mesh extraction step")
    if padding is None:
        padding = max(2, round(4 * resolution / 1024))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(_REPO_ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    with tempfile.TemporaryDirectory(prefix="dreamer-unwrap-") as tmp:
        in_path, out_path = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")
        np.savez(in_path, vertices=vertices, faces=faces, resolution=resolution, padding=padding)
        cmd = [sys.executable, "-m", "dreamer.export.unwrap", in_path, out_path]
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise DreamerError(
                f"UV unwrapping (xatlas) took over {timeout_s:.0f}s on {len(faces)} faces; "
                "decimate the mesh (fewer faces) or raise the unwrap timeout"
            ) from None
        if proc.returncode != 0 or not os.path.exists(out_path):
            last = (proc.stderr or "").strip().splitlines()
            detail = f": {last[-1][:160]}" if last else ""
            raise DreamerError(
                f"UV unwrapping (xatlas) failed with exit code {proc.returncode} on {len(faces)} faces"
                f"{detail}; decimate or repair the mesh (remove degenerate/non-manifold faces) and retry"
            )
        out = np.load(out_path)
        return out["vmapping"], out["faces"], out["uvs"]


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m dreamer.export.unwrap IN.npz OUT.npz")
    _worker(sys.argv[1], sys.argv[2])
