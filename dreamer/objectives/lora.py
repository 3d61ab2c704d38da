"""The fake (variational) score shared by VSD, DSD and ESD (reference §2, §4).

``FakeScore`` is the generic interface: eps of the *current renders'* distribution, with the
camera (``camera``) or without it (``nocamera``), plus its own training step. On a diffusers
prior it is ``LoRAFakeScore``: a PEFT LoRA (rank 4 on to_q/to_k/to_v/to_out.0) on the prior's
own UNet, switched on only for the fake score so the teacher always runs LoRA-free, and a
camera MLP (flattened 4x4 c2w -> ``TimestepEmbedding``) added to the timestep embedding through
a forward hook. Trained with camera dropout (a zero camera is "unconditional", as ESD needs) by
its own AdamW, K steps per objective call. A camera-conditioned prior's own camera features
(``DiffusersPrior.unet_condition``) reach the LoRA UNet as they reach the teacher, in both
branches: they belong to the base model, not to the fake score's camera. On the analytic priors
the fake score is exact or a KDE of the particles (``dreamer/objectives/toy.py``).
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dreamer.config import Strict
from dreamer.errors import DreamerError
from dreamer.priors.base import Prior, Prompt, Views

FakeBranch = Literal["camera", "nocamera"]
_COUNTER = itertools.count()


def camera_condition(views: Views) -> Tensor:
    """[B, 16] float32: the flattened camera-to-world matrices (threestudio's ``extrinsics``)."""
    return views.cameras.c2w.detach().reshape(-1, 16).float()


class FakeScore(ABC):
    """A score model of the distribution of the renders themselves."""

    @abstractmethod
    def noise(
        self, x_t: Tensor, t: Tensor, prompt: Prompt, views: Views, branches: Sequence[FakeBranch]
    ) -> Tensor:
        """[K, B, ...] eps of the fake score for each branch, without gradients."""

    def observe(self, x: Tensor) -> None:  # noqa: B027 - most fake scores learn only in ``train``
        """See the current (detached) batch before ``noise`` is asked for (a KDE is built from it)."""

    def train(self, x: Tensor, views: Views, prompt: Prompt, generator: torch.Generator) -> float:
        """Fit the fake score to the (detached) current renders x; returns the last loss."""
        return 0.0

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:  # noqa: B027 - stateless by default
        """Restore what ``state_dict`` returned."""


class LoRAConfig(Strict):
    rank: int = 4
    lr: float = 1e-4
    weight_decay: float = 0.01
    #: probability of training with a zero camera (ESD needs the unconditional branch)
    camera_dropout: float = 0.1
    #: LoRA optimiser steps per objective call (the update ratio K)
    updates_per_step: int = 1
    #: training timesteps tau ~ U[t_min, t_max) as fractions of T
    t_min: float = 0.0
    t_max: float = 1.0


class LoRAFakeScore(FakeScore):
    """LoRA + camera MLP on a ``DiffusersPrior``'s UNet; see the module docstring."""

    TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]

    def __init__(self, prior: Prior, cfg: LoRAConfig) -> None:
        unet = getattr(prior, "unet", None)
        if unet is None:
            raise DreamerError(f"the LoRA fake score needs a diffusers prior, got {type(prior).__name__}")
        from diffusers.models.embeddings import TimestepEmbedding
        from peft import LoraConfig

        self.prior = prior
        self.cfg = cfg
        self.unet = unet
        self.adapter = f"dreamer_fake_{next(_COUNTER)}"
        unet.add_adapter(
            LoraConfig(r=cfg.rank, lora_alpha=cfg.rank, target_modules=self.TARGETS),
            adapter_name=self.adapter,
        )
        unet.disable_adapters()  # the teacher runs LoRA-free; enabled only inside ``_lora_on``
        self._lora_params: dict[str, nn.Parameter] = {}
        for name, p in unet.named_parameters():
            if f".{self.adapter}." in name:
                p.data = p.data.float()
                p.requires_grad_(True)
                self._lora_params[name.replace(self.adapter, "fake")] = p
        device = next(unet.parameters()).device
        emb_dim = unet.time_embedding.linear_2.out_features
        self.camera_mlp = TimestepEmbedding(16, emb_dim).to(device)
        nn.init.zeros_(self.camera_mlp.linear_2.weight)  # at init the fake score is the teacher
        nn.init.zeros_(self.camera_mlp.linear_2.bias)
        self._camera: Tensor | None = None
        unet.time_embedding.register_forward_hook(self._add_camera)
        params = list(self._lora_params.values()) + list(self.camera_mlp.parameters())
        self.optimizer = torch.optim.AdamW(
            params, lr=cfg.lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay
        )

    def _add_camera(self, module: nn.Module, args: Any, out: Tensor) -> Tensor | None:
        if self._camera is None:
            return None
        return out + self.camera_mlp(self._camera.to(out.device)).to(out.dtype)

    @contextmanager
    def _lora_on(self) -> Iterator[None]:
        self.unet.enable_adapters()
        self.unet.set_adapter(self.adapter)
        try:
            yield
        finally:
            self._camera = None
            self.unet.disable_adapters()

    def _raw(self, x_t: Tensor, t: Tensor, prompt: Prompt, views: Views, camera: Tensor) -> Tensor:
        """The LoRA UNet's raw output (eps, v or x0) for x_t [N, ...] and cameras [N, 16].

        Call inside ``_lora_on`` (PEFT freezes adapters while they are disabled, so training keeps
        them on through backward and the optimiser step)."""
        prior: Any = self.prior
        n = x_t.shape[0]
        labels = views.cameras.view_labels()
        repeats = n // len(labels)
        emb = prompt.branch("plain", labels).to(prior.device, prior.dtype).repeat(repeats, 1, 1)
        self._camera = camera
        out = self.unet(
            x_t.to(prior.device, prior.dtype),
            t.to(prior.device),
            encoder_hidden_states=emb,
            return_dict=False,
            **prior.unet_condition(views, repeats),
        )[0]
        return out[:, : prior.in_channels].float()

    def _to_eps(self, out: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        kind = getattr(self.prior, "prediction_type", "epsilon")
        if kind == "epsilon":
            return out
        alpha, sigma = (v.view(-1, *([1] * (out.ndim - 1))) for v in self.prior.alpha_sigma(t))
        x = x_t.float()
        if kind == "v_prediction":
            return sigma * x + alpha * out
        return (x - alpha * out) / sigma

    @torch.no_grad()
    def noise(
        self, x_t: Tensor, t: Tensor, prompt: Prompt, views: Views, branches: Sequence[FakeBranch]
    ) -> Tensor:
        cam = camera_condition(views).to(x_t.device)
        cams = torch.cat([cam if b == "camera" else torch.zeros_like(cam) for b in branches])
        k, b = len(branches), x_t.shape[0]
        x_in, t_in = x_t.repeat(k, *([1] * (x_t.ndim - 1))), t.long().repeat(k)
        with self._lora_on():
            eps = self._to_eps(self._raw(x_in, t_in, prompt, views, cams), x_in, t_in)
        return eps.reshape(k, b, *x_t.shape[1:])

    def train(self, x: Tensor, views: Views, prompt: Prompt, generator: torch.Generator) -> float:
        """K AdamW steps of ||pred(alpha x + sigma eps', c~, tau) - target||^2 on detached x."""
        x = x.detach().float()
        num_train = self.prior.num_train_timesteps
        lo, hi = int(self.cfg.t_min * num_train), max(int(self.cfg.t_max * num_train), 1)
        kind = getattr(self.prior, "prediction_type", "epsilon")
        loss_value = 0.0
        with torch.enable_grad(), self._lora_on():
            for _ in range(self.cfg.updates_per_step):
                tau = torch.randint(lo, hi, (x.shape[0],), generator=generator).to(x.device)
                eps = torch.randn(x.shape, generator=generator).to(x)
                x_tau = self.prior.add_noise(x, eps, tau)
                cam = camera_condition(views).to(x.device)
                keep = (torch.rand(x.shape[0], generator=generator) >= self.cfg.camera_dropout).to(cam)
                pred = self._raw(x_tau, tau, prompt, views, cam * keep.unsqueeze(1))
                if kind == "epsilon":
                    target = eps
                elif kind == "v_prediction":
                    alpha, sigma = (v.view(-1, *([1] * (x.ndim - 1))) for v in self.prior.alpha_sigma(tau))
                    target = alpha * eps - sigma * x
                else:
                    target = x
                loss = F.mse_loss(pred, target.to(pred))
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                loss_value = loss.item()
        return loss_value

    def state_dict(self) -> dict:
        return {
            "lora": {k: p.detach().cpu().clone() for k, p in self._lora_params.items()},
            "camera": {k: v.detach().cpu().clone() for k, v in self.camera_mlp.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            for k, v in state["lora"].items():
                self._lora_params[k].copy_(v)
        self.camera_mlp.load_state_dict(state["camera"])
        self.optimizer.load_state_dict(state["optimizer"])
