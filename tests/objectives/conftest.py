"""Fixtures the objective tests share: one torch thread, offline, and the tiny SD as a prior."""

from __future__ import annotations

import pytest
import torch

from dreamer.priors.diffusers_prior import DiffusersPrior, load_diffusers_prior
from tests.tiny_models import make_tiny_sd

CPU = torch.device("cpu")


@pytest.fixture
def one_thread():
    """Tiny tensors and networks lose more to thread hand-offs than they gain."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def offline_one_thread(monkeypatch: pytest.MonkeyPatch, one_thread):
    """Offline, and one thread."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def tiny_sd_prior(
    tmp_path_factory: pytest.TempPathFactory, name: str, make: dict | None = None, **load
) -> DiffusersPrior:
    """The tiny SD of ``tests.tiny_models`` (``make``: its options), saved and loaded on the CPU."""
    root = tmp_path_factory.mktemp(name)
    path = make_tiny_sd(root / "sd", **(make or {}))
    return load_diffusers_prior(str(path), CPU, cache_dir=root / "cache", **load)
