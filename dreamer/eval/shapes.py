"""Independent checks of the shapes world: a classifier for 2D samples, nearest primitives for 3D.

The judge is a small CNN trained on renders of the shapes world (``dreamer.priors.shapes``) and
nothing else: it never sees the diffusion model, so it can grade the model's samples. A mesh is
graded by the canonical primitive nearest to it in Chamfer distance (scene space, no alignment)
and by its mean surface colour. Train the judge with ``python -m dreamer.eval.shapes``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dreamer.eval.metrics import sample_surface, score_meshes
from dreamer.export.files import staged_folder
from dreamer.priors.shapes.world import COLOUR_NAMES, SHAPES, canonical_mesh, colour_rgb
from dreamer.priors.weights import ASSETS_DIR
from dreamer.representations.mesh import TexturedMesh

JUDGE_DIR = ASSETS_DIR / "shapes-judge"


class ShapesJudge(nn.Module):
    """Images [B, S, S, 3] in [0, 1] -> (shape logits [B, 6], colour logits [B, 8])."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        layers, channels = [], 3
        for out, stride in ((width, 1), (2 * width, 2), (4 * width, 2), (4 * width, 2)):
            layers += [nn.Conv2d(channels, out, 3, stride, 1), nn.GroupNorm(8, out), nn.SiLU()]
            channels = out
        self.features = nn.Sequential(*layers)
        self.shape_head = nn.Linear(channels, len(SHAPES))
        self.colour_head = nn.Linear(channels, len(COLOUR_NAMES))

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        x = images.permute(0, 3, 1, 2) * 2.0 - 1.0
        h = self.features(x).mean((-2, -1))
        return self.shape_head(h), self.colour_head(h)

    @torch.no_grad()
    def classify(self, images: Tensor) -> tuple[list[str], list[str]]:
        shape_logits, colour_logits = self(images.float())
        return [SHAPES[i] for i in shape_logits.argmax(-1)], [COLOUR_NAMES[i] for i in colour_logits.argmax(-1)]


def train_judge(
    per_prompt: int = 100, epochs: int = 4, seed: int = 1, batch_size: int = 64
) -> tuple[ShapesJudge, dict]:
    """Train on renders drawn with ``seed`` and test on renders drawn with ``seed + 1``."""
    from dreamer.priors.shapes.dataset import make_dataset

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    train = make_dataset(per_prompt, seed)
    test = make_dataset(max(4, per_prompt // 5), seed + 1)
    images = train.unit_images()
    shapes, colours = torch.from_numpy(train.shape), torch.from_numpy(train.colour)
    judge = ShapesJudge()
    optimizer = torch.optim.AdamW(judge.parameters(), lr=2e-3)
    steps = epochs * (len(images) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps)
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=gen)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            idx = order[start : start + batch_size]
            x = images[idx]
            # samples from a small diffusion model are a little noisy and blurred: be robust to both
            x = torch.where(torch.rand(len(idx), 1, 1, 1, generator=gen) < 0.5, x.flip(2), x)
            x = x + 0.04 * torch.rand(len(idx), 1, 1, 1, generator=gen) * torch.randn(x.shape, generator=gen)
            shape_logits, colour_logits = judge(x.clamp(0, 1))
            loss = F.cross_entropy(shape_logits, shapes[idx]) + F.cross_entropy(colour_logits, colours[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    judge.eval()
    shape_pred, colour_pred = judge.classify(test.unit_images())
    log = {
        "seed": seed,
        "train_images": len(train),
        "test_images": len(test),
        "epochs": epochs,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "test_shape_accuracy": float(np.mean([SHAPES[s] == p for s, p in zip(test.shape, shape_pred)])),
        "test_colour_accuracy": float(np.mean([COLOUR_NAMES[c] == p for c, p in zip(test.colour, colour_pred)])),
    }
    return judge, log


def save_judge(judge: ShapesJudge, log: dict, folder: Path) -> None:
    """Write judge.safetensors and judge.json into ``folder`` (staged, then renamed)."""
    from safetensors.torch import save_file

    with staged_folder(folder) as staging:
        save_file(judge.state_dict(), str(staging / "judge.safetensors"))
        (staging / "judge.json").write_text(json.dumps(log, indent=2) + "\n")


def load_judge(folder: Path = JUDGE_DIR) -> ShapesJudge:
    from safetensors.torch import load_file

    judge = ShapesJudge()
    judge.load_state_dict(load_file(str(Path(folder) / "judge.safetensors")))
    return judge.eval()


def nearest_primitive(mesh: TexturedMesh, n: int = 20_000) -> tuple[str, dict[str, float]]:
    """The canonical primitive nearest to ``mesh`` in Chamfer-L1 (scene space, no alignment),
    and the Chamfer distance to every primitive."""
    distances = {shape: score_meshes(mesh, canonical_mesh(shape), n=n)["chamfer_l1"] for shape in SHAPES}
    return min(distances, key=distances.get), distances


def mean_surface_colour(mesh: TexturedMesh, n: int = 20_000) -> np.ndarray:
    """Area-weighted mean sRGB colour [3] of the surface (texture or vertex colours)."""
    return sample_surface(mesh, n)[2].mean(0)


def colour_distance(rgb: np.ndarray, colour: str) -> float:
    """Euclidean distance between ``rgb`` and the named colour (RGB in 0..1)."""
    return float(np.linalg.norm(np.asarray(rgb) - colour_rgb(colour)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the shapes judge (a small shape-and-colour classifier).")
    parser.add_argument("--out", type=Path, default=JUDGE_DIR)
    parser.add_argument("--per-prompt", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    judge, log = train_judge(args.per_prompt, args.epochs, args.seed)
    save_judge(judge, log, args.out)
    print(json.dumps(log, indent=2))


if __name__ == "__main__":
    main()
