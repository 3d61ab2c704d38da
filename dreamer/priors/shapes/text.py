"""A word-level CLIP tokenizer written by hand, and the shapes prior's small text encoder.

The tokenizer is a real ``CLIPTokenizer`` (BPE files) whose merges spell out a fixed word list,
so those words become single tokens; every lowercase letter, digit and common punctuation mark
is in the vocabulary too, so any prompt still tokenizes. The test suite's tiny random models use
the same writer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import torch

from dreamer.priors.shapes.world import COLOUR_NAMES, SHAPES

CHARS = "abcdefghijklmnopqrstuvwxyz0123456789,.!-'"
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
#: the shapes world's words: "a {colour} {shape}, {front|side|back|overhead} view"
SHAPE_WORDS: tuple[str, ...] = ("a", *COLOUR_NAMES, *SHAPES, "front", "side", "back", "overhead", "view")
#: tokens per prompt: BOS + "a colour shape , label view" + EOS fits with room to spare
SHAPES_MAX_LENGTH = 12
TEXT_DIM = 64


def write_clip_tokenizer(folder: Path, words: Iterable[str], model_max_length: int = 77) -> None:
    """Write a CLIP BPE tokenizer to ``folder`` in which each of ``words`` is one token."""
    from transformers import CLIPTokenizer

    vocab: dict[str, int] = {}
    merges: list[str] = []

    def add(token: str) -> None:
        if token not in vocab:
            vocab[token] = len(vocab)

    for ch in CHARS:
        add(ch)
        add(ch + "</w>")
    for word in words:
        # left-to-right merges: "c o" -> "co", "co r" -> "cor", ..., the last piece ends in </w>
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        current = pieces[0]
        for piece in pieces[1:]:
            merge = f"{current} {piece}"
            if merge not in merges:
                merges.append(merge)
            current += piece
            add(current)
    add(BOS)
    add(EOS)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tokenizer = CLIPTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"))
    tokenizer.model_max_length = model_max_length
    tokenizer.save_pretrained(str(folder))


def clip_text_encoder(
    vocab: dict[str, int], hidden: int, layers: int, heads: int, max_length: int = 77
) -> torch.nn.Module:
    """A randomly initialised ``CLIPTextModel`` whose special-token ids match ``vocab``."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=256,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=max_length,
        projection_dim=hidden,
        bos_token_id=vocab[BOS],
        eos_token_id=vocab[EOS],
        pad_token_id=vocab[EOS],
    )
    return CLIPTextModel(config)


def tokenize(tokenizer, texts: list[str]) -> torch.Tensor:
    """[N, L] token ids padded exactly as ``DiffusersPrior`` pads prompts (so training and use agree)."""
    return tokenizer(
        texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
