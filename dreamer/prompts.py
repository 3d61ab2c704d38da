"""Prompt validation shared by the CLI, the pipeline and the studio (torch-free, so the CLI can
reject a bad prompt before any heavy import)."""

from __future__ import annotations

from dreamer.errors import DreamerError

MAX_PROMPT_CHARS = 1000


def check_prompt(prompt: str) -> str:
    """The stripped prompt, or a one-line DreamerError saying what is wrong with it."""
    prompt = prompt.strip()
    if not prompt:
        raise DreamerError('the prompt is empty: describe the object, e.g. dreamer generate "a wooden chair"')
    if len(prompt) > MAX_PROMPT_CHARS:
        raise DreamerError(f"the prompt is {len(prompt)} characters long; keep it under {MAX_PROMPT_CHARS}")
    return prompt
