import math

import pytest
import torch

from dreamer.cameras import framing_radius, orbit_cameras, sample_orbit_cameras, view_label, wrap_azimuth


def test_azimuth_zero_looks_at_the_front_from_plus_z():
    cam = orbit_cameras(0.0, 0.0, radius=3.0)
    assert torch.allclose(cam.positions[0], torch.tensor([0.0, 0.0, 3.0]), atol=1e-6)
    # OpenGL: the camera looks down its -z, so its +z axis points back at the camera position
    assert torch.allclose(cam.c2w[0, :3, 2], torch.tensor([0.0, 0.0, 1.0]), atol=1e-6)
    assert torch.allclose(cam.c2w[0, :3, 1], torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)


def test_azimuth_increases_towards_plus_x_and_elevation_goes_up():
    cam = orbit_cameras([0.0, 30.0], [90.0, 0.0], radius=2.0)
    assert torch.allclose(cam.positions[0], torch.tensor([2.0, 0.0, 0.0]), atol=1e-6)
    assert cam.positions[1, 1] == pytest.approx(2.0 * math.sin(math.radians(30)), abs=1e-6)


def test_rotation_is_orthonormal_even_straight_overhead():
    cams = orbit_cameras([90.0, -90.0, 45.0], [10.0, 200.0, -30.0])
    R = cams.c2w[:, :3, :3]
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3).expand(3, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(R), torch.ones(3), atol=1e-5)


def test_world_origin_projects_to_image_centre():
    cams = orbit_cameras([10.0, -20.0], [33.0, 250.0], radius=2.5, fovy_deg=45.0)
    origin = torch.tensor([0.0, 0.0, 0.0, 1.0])
    x = cams.viewmats() @ origin
    K = cams.intrinsics(64, 96)
    uv = (K @ x[:, :3, None]).squeeze(-1)
    assert torch.allclose(uv[:, :2] / uv[:, 2:], torch.tensor([[48.0, 32.0], [48.0, 32.0]]), atol=1e-4)
    clip = cams.mvp(64, 96) @ origin
    assert torch.allclose(clip[:, :2] / clip[:, 3:], torch.zeros(2, 2), atol=1e-5)


def test_a_point_above_the_origin_is_in_the_upper_half_of_the_image():
    cams = orbit_cameras(0.0, 45.0, radius=2.5)
    x = cams.viewmats() @ torch.tensor([0.0, 0.3, 0.0, 1.0])
    v = (cams.intrinsics(64, 64) @ x[:, :3, None]).squeeze(-1)
    assert float(v[0, 1] / v[0, 2]) < 32.0  # OpenCV rows grow downwards


@pytest.mark.parametrize(
    ("elevation", "azimuth", "label"),
    [(0, 0, "front"), (0, 44, "front"), (0, 90, "side"), (0, -90, "side"), (0, 180, "back"),
     (0, -170, "back"), (0, 350, "front"), (70, 0, "overhead"), (30, 135.5, "back")],
)
def test_view_labels(elevation, azimuth, label):
    assert view_label(elevation, azimuth) == label


def test_wrap_azimuth_range():
    assert wrap_azimuth(540.0) == 180.0
    assert wrap_azimuth(-180.0) == 180.0
    assert wrap_azimuth(-190.0) == 170.0


def test_sampling_is_seeded_and_in_range():
    a = sample_orbit_cameras(16, torch.Generator().manual_seed(3), (-10, 45), (2.0, 3.0), (40, 50))
    b = sample_orbit_cameras(16, torch.Generator().manual_seed(3), (-10, 45), (2.0, 3.0), (40, 50))
    assert torch.equal(a.c2w, b.c2w)
    assert a.elevation_deg.min() >= -10 - 1e-4 and a.elevation_deg.max() <= 45 + 1e-4
    assert a.radius.min() >= 2.0 and a.radius.max() <= 3.0
    # stratified azimuths: every 45-degree sector gets two of the 16 cameras
    sectors = torch.floor((a.azimuth_deg + 180) / 45).long()
    assert torch.bincount(sectors, minlength=8).tolist() == [2] * 8


def test_framing_radius_fits_the_unit_ball():
    r = framing_radius(45.0, 1.0, margin=1.0)
    assert math.degrees(math.asin(1.0 / r)) == pytest.approx(22.5)


def test_framed_cameras_keep_the_object_inside_the_frame():
    """Varying-FOV polish cameras: wide and narrow lenses alike see the whole object's ball."""
    from dreamer.cameras import sample_framed_cameras

    gen = torch.Generator().manual_seed(0)
    cams = sample_framed_cameras(64, gen, object_radius=0.8, fovy_range=(20.0, 70.0))
    assert float(cams.fovy_deg.min()) < 30 and float(cams.fovy_deg.max()) > 60
    # points on the ball's silhouette as seen from each camera are the worst case
    dirs = torch.nn.functional.normalize(torch.randn(4000, 3, generator=gen), dim=-1)
    pts = torch.cat([dirs * 0.8, torch.ones(4000, 1)], -1)
    clip = torch.einsum("cij,vj->cvi", cams.mvp(64, 64), pts)
    ndc = clip[..., :2] / clip[..., 3:4]
    assert ndc.abs().max() <= 1.0
    assert ndc.abs().amax((1, 2)).min() > 0.6  # and the object fills a good part of the frame
