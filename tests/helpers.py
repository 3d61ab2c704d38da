"""Small meshes made in code for tests (no files needed)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import trimesh

from dreamer.representations.mesh import TexturedMesh

REPO = Path(__file__).resolve().parents[1]
#: preset overrides that make a whole pipeline run take seconds (tests only)
TINY_RUN = {
    "coarse.steps": 20,
    "coarse.resolution": 32,
    "coarse.batch_size": 1,
    "init.num_points": 300,
    "extract.grid_resolution": 48,
    "extract.calibration_views": 4,
    "extract.calibration_resolution": 48,
    "extract.target_faces": 2000,
    "polish.steps": 3,
    "polish.resolution": 32,
    "texture.resolution": 128,
    "texture.bake_resolution": 64,
    "texture.bake_azimuths": 4,
    "texture.refine.steps": 2,
    "texture.refine.resolution": 32,
    "texture.refine.detail": 32,
    "export.preview_size": 64,
}


def coloured_box(extents=(0.8, 0.6, 0.5), seed: int = 0) -> TexturedMesh:
    """A box whose six faces have distinct colours (unwelded, so colours do not blend)."""
    box = trimesh.creation.box(extents=extents)
    tri = box.vertices[box.faces]  # [F, 3, 3]
    normals = box.face_normals
    palette = {
        (1, 0, 0): (0.9, 0.1, 0.1),
        (-1, 0, 0): (0.1, 0.9, 0.1),
        (0, 1, 0): (0.1, 0.1, 0.9),
        (0, -1, 0): (0.9, 0.9, 0.1),
        (0, 0, 1): (0.9, 0.1, 0.9),
        (0, 0, -1): (0.1, 0.9, 0.9),
    }
    colours = np.array([palette[tuple(np.round(n).astype(int))] for n in normals], np.float32)
    vertices = tri.reshape(-1, 3)
    faces = np.arange(len(vertices)).reshape(-1, 3)
    return TexturedMesh(vertices, faces, vertex_colors=np.repeat(colours, 3, axis=0))


def gltf_validator_report(path: Path) -> dict:
    """The Khronos glTF validator's report on a GLB (npm package, run through node)."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    proc = subprocess.run(
        ["node", str(REPO / "tools" / "validate_gltf.mjs"), str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode in (0, 1), f"validator did not run (npm ci?): {proc.stderr}"
    return json.loads(proc.stdout)


def fake_finished_run(folder: Path, prior: str, prompt: str = "a box", status: str = "succeeded") -> Path:
    """A run folder holding only what ``dreamer edit`` reads first (run.json, checkpoints/coarse.pt),
    for the error paths: no pipeline runs, so the checks are tested in milliseconds."""
    import torch

    from dreamer.presets import load_preset
    from dreamer.representations.gaussians import Gaussians

    folder = Path(folder)
    (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
    blob = Gaussians.blob(50, (0.4, 0.4, 0.4), torch.Generator().manual_seed(0))
    torch.save({k: v.detach() for k, v in blob.state_dict().items()}, folder / "checkpoints" / "coarse.pt")
    record = {
        "status": status,
        "prompt": prompt,
        "negative_prompt": "",
        "seed": 0,
        "preset": "cpu",
        "prior": {"spec": prior},
        "device": "cpu",
        "settings": load_preset("cpu").model_dump(mode="json"),
        "stages": {},
    }
    (folder / "run.json").write_text(json.dumps(record))
    return folder
