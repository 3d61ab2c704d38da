"""Train the shapes prior: ``python -m dreamer.priors.shapes.train`` (24-55 min on 2 CPU cores).

Renders the data set (:mod:`dreamer.priors.shapes.dataset`), then trains the UNet and the text
encoder together on v-prediction MSE, with caption dropout for classifier-free guidance and an
exponential moving average of the weights (the EMA is what ships). The UNet also gets each
image's camera features (:mod:`dreamer.priors.camera_condition`), with the azimuth mirrored for
images flipped left-right, and keeps them when the caption is dropped: the unconditional branch
of guidance still knows the view and the shading. Every random draw comes from generators seeded
by ``--seed``, so a rerun on the same machine gives the same weights. The run checkpoints every
few hundred steps into ``--work`` and resumes from there after a crash; the model folder is
written to a temporary folder and renamed, never half-written.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from dreamer.export.files import staged_folder
from dreamer.priors.shapes.dataset import batches, make_dataset
from dreamer.priors.shapes.model import build_scheduler, build_text_parts, build_unet, save_model
from dreamer.priors.shapes.text import tokenize
from dreamer.priors.weights import SHAPES_PRIOR_DIR


@dataclass
class TrainConfig:
    seed: int = 0
    steps: int = 3600
    batch_size: int = 32
    per_prompt: int = 300
    lr: float = 2e-3
    warmup: int = 100
    ema_decay: float = 0.999
    #: caption mix: the rest are view-dependent captions ("a red cube, side view")
    p_empty: float = 0.1
    p_plain: float = 0.2
    checkpoint_every: int = 200


def _lr_factor(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))


def _captions(data, idx: np.ndarray, gen: torch.Generator, cfg: TrainConfig) -> list[str]:
    u = torch.rand(len(idx), generator=gen).tolist()
    out = []
    for i, r in zip(idx, u):
        if r < cfg.p_empty:
            out.append("")
        else:
            out.append(data.caption(int(i), with_view=r >= cfg.p_empty + cfg.p_plain))
    return out


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.lerp_(p, 1.0 - decay)


def train(cfg: TrainConfig, out: Path, work: Path) -> dict:
    """Train and write the model folder ``out``; returns the training log (also in ``out``)."""
    torch.manual_seed(cfg.seed)
    work.mkdir(parents=True, exist_ok=True)
    text_encoder, tokenizer = build_text_parts(work / "model")
    unet = build_unet()
    scheduler = build_scheduler()
    params = list(unet.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    ema_unet, ema_text = copy.deepcopy(unet).requires_grad_(False), copy.deepcopy(text_encoder).requires_grad_(False)
    gens = {
        name: torch.Generator().manual_seed(cfg.seed * 1000 + k) for k, name in enumerate(("order", "noise", "caption"))
    }
    start, losses, elapsed = 0, [], 0.0
    state_path = work / "train_state.pt"
    if state_path.is_file():
        state = torch.load(state_path, weights_only=False)
        if state["config"] != asdict(cfg):
            raise SystemExit(f"{state_path} was made with other settings; delete {work} to start over")
        for module, key in ((unet, "unet"), (text_encoder, "text"), (ema_unet, "ema_unet"), (ema_text, "ema_text")):
            module.load_state_dict(state[key])
        optimizer.load_state_dict(state["optimizer"])
        for name, g in state["generators"].items():
            gens[name].set_state(g)
        start, losses, elapsed = state["step"], state["losses"], state["elapsed"]
    data = make_dataset(cfg.per_prompt, cfg.seed)
    images = torch.from_numpy(data.images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    order = batches(data, cfg.batch_size, gens["order"])
    for _ in range(start):  # replay the order stream to where the checkpoint left it
        next(order)
    began = time.perf_counter() - elapsed
    bar = tqdm(total=cfg.steps, initial=start, desc="training shapes prior", unit="step", dynamic_ncols=True)
    for step in range(start, cfg.steps):
        idx = next(order)
        x0 = images[idx]
        flip = torch.rand(len(idx), generator=gens["noise"]) < 0.5
        x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        noise = torch.randn(x0.shape, generator=gens["noise"])
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(idx),), generator=gens["noise"])
        x_t = scheduler.add_noise(x0, noise, t)
        emb = text_encoder(tokenize(tokenizer, _captions(data, idx, gens["caption"], cfg)))[0]
        target = scheduler.get_velocity(x0, noise, t)
        pred = unet(x_t, t, encoder_hidden_states=emb, class_labels=data.camera_features(idx, flip)).sample
        loss = torch.nn.functional.mse_loss(pred, target)
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * _lr_factor(step, cfg)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        _ema_update(ema_unet, unet, decay)
        _ema_update(ema_text, text_encoder, decay)
        losses.append(float(loss.detach()))
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
            state = {
                "config": asdict(cfg),
                "step": step + 1,
                "losses": losses,
                "elapsed": time.perf_counter() - began,
                "unet": unet.state_dict(),
                "text": text_encoder.state_dict(),
                "ema_unet": ema_unet.state_dict(),
                "ema_text": ema_text.state_dict(),
                "optimizer": optimizer.state_dict(),
                # the order stream is replayed from its seed below, not restored
                "generators": {name: g.get_state() for name, g in gens.items() if name != "order"},
            }
            torch.save(state, work / "train_state.tmp")
            os.replace(work / "train_state.tmp", state_path)
    bar.close()
    log = {
        "config": asdict(cfg),
        "wall_seconds": round(time.perf_counter() - began, 1),
        "threads": torch.get_num_threads(),
        "images": len(data),
        "loss_first_100": round(float(np.mean(losses[:100])), 4),
        "loss_last_100": round(float(np.mean(losses[-100:])), 4),
        "unet_parameters": sum(p.numel() for p in unet.parameters()),
        "text_encoder_parameters": sum(p.numel() for p in text_encoder.parameters()),
    }
    with staged_folder(out) as staging:
        shutil.copytree(work / "model" / "tokenizer", staging / "tokenizer")
        save_model(staging, ema_unet, ema_text)
        (staging / "train_log.json").write_text(json.dumps(log, indent=2) + "\n")
    state_path.unlink(missing_ok=True)
    return log


def main(argv: list[str] | None = None) -> None:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(
        description="Train the built-in shapes prior (a 32 px pixel-space diffusion model)."
    )
    parser.add_argument("--out", type=Path, default=SHAPES_PRIOR_DIR, help="model folder to write (diffusers layout)")
    parser.add_argument("--work", type=Path, default=Path("runs/shapes-prior-train"), help="checkpoints for resuming")
    for name, value in asdict(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    args = parser.parse_args(argv)
    cfg = TrainConfig(**{name: getattr(args, name) for name in asdict(defaults)})
    log = train(cfg, args.out, args.work)
    print(json.dumps(log, indent=2))


if __name__ == "__main__":
    main()
