"""The shapes prior's networks and its diffusers folder (the layout ``load_diffusers_prior`` reads).

A pixel-space ``UNet2DConditionModel`` at 32 px (3 channels, like DeepFloyd IF stage I), with
cross-attention at 8 px and in the middle block, and the pooled prompt and the camera features
(:mod:`dreamer.priors.camera_condition`, 18 k parameters) added to the timestep embedding,
which scales and shifts each ResNet block's features: 1.53 M parameters, which a 2-core CPU
trains in under an hour (24-55 min seen). The schedule is the cosine one
(``squaredcos_cap_v2``) with v-prediction: near t = T the signal is almost gone, and an epsilon
model's clean-image estimate ``(x_t - sigma eps) / alpha`` divides its error by alpha ~ 0.01,
which gave samples saturated, tinted backgrounds; ``x0 = alpha x_t - sigma v`` stays bounded there.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from dreamer.priors.camera_condition import CAMERA_CONDITION_KEY, CAMERA_CONDITION_LAYOUT, feature_count
from dreamer.priors.diffusers_prior import JUDGES_NORMAL_MAPS_KEY
from dreamer.priors.shapes.text import SHAPE_WORDS, SHAPES_MAX_LENGTH, TEXT_DIM, clip_text_encoder, write_clip_tokenizer

#: pixel side of the model
SAMPLE_SIZE = 32


def build_unet() -> torch.nn.Module:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=SAMPLE_SIZE,
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        norm_num_groups=16,
        down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_DIM,
        attention_head_dim=32,
        # the attention-pooled prompt also joins the timestep embedding, so every ResNet block
        # hears it: colour is a global attribute that cross-attention at 8 px alone learns slowly
        addition_embed_type="text",
        addition_embed_type_num_heads=4,
        # the camera features (view and flat/shaded) join the timestep embedding too: without them
        # a pyramid averaged over views is a cone, and flat colours are judged as if shaded
        class_embed_type="projection",
        projection_class_embeddings_input_dim=feature_count(CAMERA_CONDITION_LAYOUT),
        # that embedding scales and shifts each block's normalised features (FiLM) rather than
        # only being added to them: a pilot's loss at 600 steps fell from 0.075 to 0.065
        resnet_time_scale_shift="scale_shift",
    )


def build_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")


def build_text_parts(folder: Path) -> tuple[torch.nn.Module, object]:
    """Write the tokenizer into ``folder/tokenizer`` and return (fresh text encoder, tokenizer)."""
    from transformers import CLIPTokenizer

    write_clip_tokenizer(folder / "tokenizer", SHAPE_WORDS, SHAPES_MAX_LENGTH)
    tokenizer = CLIPTokenizer.from_pretrained(str(folder / "tokenizer"))
    encoder = clip_text_encoder(tokenizer.get_vocab(), TEXT_DIM, layers=2, heads=2, max_length=SHAPES_MAX_LENGTH)
    return encoder, tokenizer


def save_model(folder: Path, unet: torch.nn.Module, text_encoder: torch.nn.Module) -> None:
    """Write unet/, text_encoder/, scheduler/ and model_index.json next to an existing tokenizer/."""
    folder = Path(folder)
    unet.save_pretrained(str(folder / "unet"))
    text_encoder.save_pretrained(str(folder / "text_encoder"))
    build_scheduler().save_pretrained(str(folder / "scheduler"))
    index = {
        "_class_name": "DiffusionPipeline",
        "unet": ["diffusers", "UNet2DConditionModel"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "DDPMScheduler"],
        # it has only seen shaded and flat renders of coloured primitives, never a normal map
        JUDGES_NORMAL_MAPS_KEY: False,
        CAMERA_CONDITION_KEY: CAMERA_CONDITION_LAYOUT,
    }
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
