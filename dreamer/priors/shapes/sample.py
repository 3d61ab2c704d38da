"""2D samples from a text-to-image prior (DDIM with classifier-free guidance): what a model
has learnt, judged without any 3D in between.

A camera-conditioned prior samples flat-albedo views from cameras drawn as the shapes data set
draws them (every prompt seen from all sides), so its samples are what the coarse stage renders.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dreamer.cameras import Cameras, sample_orbit_cameras
from dreamer.priors.base import Views
from dreamer.priors.diffusers_prior import DiffusersPrior
from dreamer.priors.shapes.dataset import ELEVATION, FOVY, RADIUS

#: classifier-free guidance for the shapes prior's samples: above 2 the judge reads fewer right
SAMPLE_GUIDANCE = 1.5


@torch.no_grad()
def sample_images(
    prior: DiffusersPrior,
    texts: list[str],
    per_text: int,
    generator: torch.Generator,
    steps: int = 50,
    guidance: float = SAMPLE_GUIDANCE,
    cameras: Cameras | None = None,
) -> Tensor:
    """``per_text`` images of each view-independent prompt: [len(texts) * per_text, S, S, 3] in [0, 1].

    A camera-conditioned prior sees each image from ``cameras`` (one per image, text-major), or
    from cameras drawn like the data set's; a text-only prior ignores them."""
    from diffusers import DDIMScheduler

    # "trailing": the first step is t = T - 1, where the cosine schedule leaves no signal; with
    # "leading" it is t = T - T/steps, where the start noise's mean still sets the image's colour
    scheduler = DDIMScheduler.from_pretrained(str(prior.folder), subfolder="scheduler", timestep_spacing="trailing")
    scheduler.set_timesteps(steps)
    prompts = [prior.encode_prompt(text) for text in texts]
    cond = torch.stack([p.embeddings["plain"] for p in prompts for _ in range(per_text)])
    uncond = prompts[0].embeddings["uncond"].expand_as(cond)
    emb = torch.cat([cond, uncond]).to(prior.device, prior.dtype)
    n, size = len(cond), prior.sample_size
    x = torch.randn(n, prior.in_channels, size, size, generator=generator).to(prior.device)
    condition = {}
    if prior.camera_conditioned:  # drawn after the start noise, so a text-only model's samples stay as they were
        cams = cameras
        if cams is None:
            cams = Cameras.cat([sample_orbit_cameras(per_text, generator, ELEVATION, RADIUS, FOVY) for _ in texts])
        if len(cams) != n:
            raise ValueError(f"sample_images: {len(cams)} cameras for {n} images")
        views = Views(cams, torch.zeros(n, 3), shading="albedo")  # the background is no feature
        condition = prior.unet_condition(views, repeats=2)
    for t in scheduler.timesteps:
        out = prior.unet(
            x.repeat(2, 1, 1, 1).to(prior.dtype),
            t.expand(2 * n).to(prior.device),
            encoder_hidden_states=emb,
            **condition,
        )
        eps_cond, eps_uncond = out.sample.float().chunk(2)
        x = scheduler.step(eps_uncond + guidance * (eps_cond - eps_uncond), t, x).prev_sample
    return prior.decode(x)
