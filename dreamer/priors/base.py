"""The prior contract: what every teacher (diffusers model, reference mesh, analytic) offers.

A prior works in its own space ``x`` (SD latents, or pixels in [-1, 1]); ``encode`` maps
renders in [0, 1] into it with gradients. Its noise schedule is VP:
``x_t = alpha_t * x + sigma_t * eps`` with ``alpha_t = sqrt(alphas_cumprod[t])``.

``predict_noise`` evaluates several conditioning *branches* for the same noisy batch in a single
network call (all CFG branches batched), and always returns epsilon, whatever the model predicts.

Branches:
    ``cond``: the view-dependent prompt ("a corgi, side view");
    ``uncond``: the negative prompt, or the empty prompt when there is none (CFG's null branch);
    ``plain``: the view-independent prompt (VSD's LoRA branch).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from dreamer.cameras import VIEW_LABELS, Cameras, ViewLabel

Branch = Literal["cond", "uncond", "plain"]
Shading = Literal["albedo", "lambertian", "textureless"]

VIEW_SUFFIX: dict[ViewLabel, str] = {
    "front": ", front view",
    "side": ", side view",
    "back": ", back view",
    "overhead": ", overhead view",
}


def view_dependent_texts(text: str) -> dict[ViewLabel, str]:
    """The prompt with threestudio's view suffixes, keyed by view label."""
    return {label: text + VIEW_SUFFIX[label] for label in VIEW_LABELS}


@dataclass
class Prompt:
    """Embedded prompt texts. ``embeddings`` maps view labels, "plain" and "uncond" to [L, D].

    Priors that ignore text (the reference prior) keep ``embeddings`` empty.
    """

    text: str
    negative: str = ""
    embeddings: dict[str, Tensor] = field(default_factory=dict)

    def branch(self, branch: Branch, labels: Sequence[ViewLabel]) -> Tensor:
        """[B, L, D] embeddings of one branch for a batch with the given view labels."""
        if branch == "cond":
            return torch.stack([self.embeddings[label] for label in labels])
        return self.embeddings[branch].unsqueeze(0).expand(len(labels), -1, -1)


@dataclass(frozen=True)
class Views:
    """What a prior may know about a rendered batch besides the pixels.

    Attributes:
        cameras: the B cameras the batch was rendered from.
        background: [B, 3] colour in [0, 1] the renders were composited over.
        shading: how the stage shaded its renders; a reference prior renders its mesh the same way.
        light_dirs: [B, 3] world-space unit vectors towards the light (shaded modes only).
        ambient: ambient term of the Lambertian model, ``ambient + (1 - ambient) * max(n.l, 0)``.
    """

    cameras: Cameras
    background: Tensor
    shading: Shading = "albedo"
    light_dirs: Tensor | None = None
    ambient: float = 0.3


class Prior(ABC):
    """A frozen denoiser seen through the score-distillation contract."""

    #: hub id, local folder or ``reference:PATH``; recorded in run.json
    name: str
    #: the weights' revision (a commit hash or file digest) when known
    revision: str | None = None
    #: the resolution the model wants its inputs at (pixels for pixel priors, latent side otherwise)
    sample_size: int
    #: whether prompts matter (the reference prior ignores them)
    uses_text: bool = True
    #: whether a rendered normal map, shown as an image, is something this prior can judge (Stable
    #: Diffusion can: ProlificDreamer's geometry stage relies on it; a model trained only on
    #: renders of coloured objects cannot, and the polish stage then needs a normal estimator)
    judges_normal_maps: bool = True

    @property
    @abstractmethod
    def alphas_cumprod(self) -> Tensor:
        """[T] cumulative products of the noise schedule, float32, on the prior's device."""

    @property
    def num_train_timesteps(self) -> int:
        return self.alphas_cumprod.shape[0]

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """alpha_t and sigma_t for integer timesteps t [B], each [B]."""
        ac = self.alphas_cumprod[t.long()]
        return ac.sqrt(), (1.0 - ac).sqrt()

    def add_noise(self, x: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        alpha, sigma = self.alpha_sigma(t)
        shape = (-1,) + (1,) * (x.ndim - 1)
        return alpha.view(shape) * x + sigma.view(shape) * noise

    @abstractmethod
    def encode(self, images: Tensor) -> Tensor:
        """Renders [B, H, W, 3] in [0, 1] -> the prior's space [B, C, h, w], differentiably."""

    @abstractmethod
    def decode(self, x: Tensor) -> Tensor:
        """The prior's space [B, C, h, w] -> images [B, H, W, 3] in [0, 1]."""

    @abstractmethod
    def encode_prompt(self, text: str, negative: str = "") -> Prompt:
        """Embed the prompt for every branch and view label (cached)."""

    @abstractmethod
    def predict_noise(
        self,
        x_t: Tensor,
        t: Tensor,
        prompt: Prompt,
        views: Views,
        branches: Sequence[Branch] = ("cond", "uncond"),
    ) -> Tensor:
        """Epsilon for each branch, from one batched network call.

        Args:
            x_t: [B, C, h, w] noisy inputs in the prior's space.
            t: [B] integer timesteps.
            prompt: from ``encode_prompt``.
            views: cameras and background of the batch.
            branches: which conditionings to evaluate.

        Returns:
            [K, B, C, h, w] float32 epsilon, K = len(branches), in the order given.
        """

    def describe(self) -> dict:
        """What run.json records about this prior."""
        return {"name": self.name, "revision": self.revision, "class": type(self).__name__}
