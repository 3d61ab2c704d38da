import torch

from dreamer.cameras import orbit_cameras
from dreamer.export.mesh_export import save_glb
from dreamer.priors.base import Views
from dreamer.priors.load import load_prior
from dreamer.priors.reference import ReferencePrior
from tests.helpers import coloured_box


def _prior():
    return ReferencePrior(coloured_box(), name="reference:box", device=torch.device("cpu"))


def test_noise_prediction_recovers_the_injected_noise_for_the_reference_image():
    prior = _prior()
    cams = orbit_cameras([10.0, 30.0], [0.0, 120.0])
    views = Views(cams, background=torch.tensor([[1.0, 1.0, 1.0], [0.2, 0.3, 0.4]]))
    clean = prior.encode(prior.clean_images(views, 32, 32))
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([50, 700])
    x_t = prior.add_noise(clean, noise, t)
    eps = prior.predict_noise(x_t, t, prior.encode_prompt("ignored"), views, ("cond", "uncond"))
    assert eps.shape == (2, 2, 3, 32, 32)
    torch.testing.assert_close(eps[0], noise, atol=1e-4, rtol=0)
    torch.testing.assert_close(eps[1], eps[0])


def test_reference_images_show_the_front_face_colour_and_the_background():
    prior = _prior()
    views = Views(orbit_cameras(0.0, 0.0), background=torch.tensor([[0.0, 0.0, 0.0]]))
    img = prior.clean_images(views, 64, 64)[0]
    torch.testing.assert_close(img[32, 32], torch.tensor([0.9, 0.1, 0.9]))  # +z face is magenta
    torch.testing.assert_close(img[0, 0], torch.zeros(3))


def test_shading_darkens_faces_turned_away_from_the_light():
    prior = _prior()
    cams = orbit_cameras(0.0, 45.0)
    bg = torch.zeros(1, 3)
    albedo = prior.clean_images(Views(cams, bg), 64, 64)
    lit = prior.clean_images(Views(cams, bg, "lambertian", torch.tensor([[1.0, 0.0, 0.0]]), 0.2), 64, 64)
    # the +x face (right half of the image at azimuth 45) is lit, the +z face (left half) is not
    assert torch.allclose(lit[0, 32, 48], albedo[0, 32, 48], atol=1e-5)
    assert torch.allclose(lit[0, 32, 16], 0.2 * albedo[0, 32, 16], atol=1e-5)


def test_load_prior_reads_a_glb(tmp_path):
    path = tmp_path / "box.glb"
    save_glb(coloured_box(), path)
    prior = load_prior(f"reference:{path}", torch.device("cpu"))
    assert prior.name == f"reference:{path}" and prior.revision and not prior.uses_text
