"""The oracle estimator answers in the OpenGL camera frame (the frame check of the reference's pitfalls)."""

from __future__ import annotations

import pytest
import torch
import trimesh

from dreamer.cameras import orbit_cameras
from dreamer.errors import DreamerError
from dreamer.export.mesh_export import save_glb
from dreamer.normals.load import load_normal_estimator
from dreamer.priors.base import Views
from dreamer.priors.reference import ReferencePrior
from dreamer.representations.mesh import TexturedMesh


@pytest.fixture(scope="module")
def sphere_prior(tmp_path_factory) -> ReferencePrior:
    ico = trimesh.creation.icosphere(subdivisions=4, radius=0.6)
    path = tmp_path_factory.mktemp("sphere") / "sphere.glb"
    save_glb(TexturedMesh(ico.vertices, ico.faces), path)
    return ReferencePrior.from_spec(f"reference:{path}", torch.device("cpu"))


def test_oracle_normals_are_in_the_opengl_camera_frame(sphere_prior) -> None:
    estimator = load_normal_estimator("auto", sphere_prior, torch.device("cpu"))
    assert estimator is not None and estimator.name == "oracle"
    cams = orbit_cameras([0.0, 0.0], [0.0, 120.0], radius=2.5, fovy_deg=40.0)
    views = Views(cams, torch.full((2, 3), 0.5))
    pred = estimator.predict(torch.zeros(2, 64, 64, 3), views)
    n = pred.normals
    assert n.shape == (2, 64, 64, 3) and pred.foreground is not None
    centre = n[:, 32, 32]
    assert torch.all(centre[:, 2] > 0.95)  # facing the camera = +z
    row = n[0, 32]
    right = row[pred.foreground[0, 32, :, 0] > 0][-1]
    assert right[0] > 0.7  # the right limb points right (+x)
    col = n[0, :, 32]
    top = col[pred.foreground[0, :, 32, 0] > 0][0]
    assert top[1] > 0.7  # the top limb (row 0 is the top of the image) points up (+y)
    fg = pred.foreground[..., 0] > 0
    assert torch.allclose(n[fg].norm(dim=-1), torch.ones(int(fg.sum())), atol=1e-4)
    assert torch.all(n[~fg] == 0) and torch.all(pred.confidence[~fg] == 0)


def test_oracle_needs_the_reference_prior() -> None:
    class NotReference:
        pass

    with pytest.raises(DreamerError, match="oracle"):
        load_normal_estimator("oracle", NotReference(), torch.device("cpu"))  # type: ignore[arg-type]
    assert load_normal_estimator("prior", NotReference(), torch.device("cpu")) is None  # type: ignore[arg-type]


def test_auto_without_marigold_weights_falls_back_to_the_prior_critic(tmp_path, monkeypatch) -> None:
    """``auto`` never downloads: with no cached Marigold it picks the prior as the critic."""
    from dreamer.normals import marigold

    calls = []
    real = marigold.load_marigold

    def spy(spec, device, **kw):
        calls.append(kw.get("download"))
        return real(spec, device, **kw)

    monkeypatch.setattr(marigold, "load_marigold", spy)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    class NotReference:
        pass

    assert load_normal_estimator("auto", NotReference(), torch.device("cpu")) is None  # type: ignore[arg-type]
    assert calls == [False]
