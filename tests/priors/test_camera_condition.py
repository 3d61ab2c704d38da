"""Camera features for camera-conditioned UNets, and the model_index.json value that declares them."""

import math

import pytest
import torch

from dreamer.cameras import Cameras, orbit_cameras
from dreamer.errors import DreamerError
from dreamer.priors.camera_condition import (
    CAMERA_CONDITION_LAYOUT,
    FIRST_LAYOUT,
    HARMONICS_LAYOUT,
    LAYOUTS,
    SCALE_CENTRE,
    SCALE_SPREAD,
    camera_features,
    feature_count,
    image_scale,
    orbit_features,
    parse_camera_condition,
)
from dreamer.priors.shapes.dataset import FOVY, RADIUS


def test_features_follow_the_orbit_convention():
    s = math.sqrt(0.5)
    cams = orbit_cameras([0.0, 0.0, 45.0, -30.0], [0.0, 90.0, 180.0, -90.0], radius=[2.0, 3.0, 2.5, 2.5])
    expected = torch.tensor(
        [
            [0.0, 1.0, 0.0, 1.0, 1.0],  # front, on +z
            [1.0, 0.0, 0.0, 1.0, 1.0],  # azimuth 90 is on +x
            [0.0, -1.0, s, s, 1.0],  # behind, above
            [-1.0, 0.0, -0.5, math.sqrt(0.75), 1.0],  # on -x, below
        ]
    )
    torch.testing.assert_close(camera_features(cams, flat=True, layout=FIRST_LAYOUT), expected, atol=1e-6, rtol=0)
    harmonics = camera_features(cams, flat=True, layout=HARMONICS_LAYOUT)
    newest = camera_features(cams, flat=True)
    assert harmonics.shape == (4, 9) and newest.shape == (4, feature_count()) == (4, 10)
    # each layout extends the one before: the same first harmonic, elevation and flat columns,
    # and the newest puts the image scale between the harmonics and the elevation
    for later in (harmonics, newest):
        torch.testing.assert_close(later[:, :2], expected[:, :2], atol=1e-6, rtol=0)
        torch.testing.assert_close(later[:, -3:], expected[:, 2:], atol=1e-6, rtol=0)
    torch.testing.assert_close(newest[:, :6], harmonics[:, :6], atol=1e-6, rtol=0)
    scale = (image_scale(cams.radius, cams.fovy_deg) - SCALE_CENTRE) / SCALE_SPREAD
    torch.testing.assert_close(newest[:, 6], scale, atol=1e-6, rtol=0)


def test_azimuth_harmonics_tell_a_face_from_a_corner_and_repeat_with_a_square():
    """A cube's look repeats every 90 degrees: its features (the 4th harmonic) must repeat too,
    and must differ between a face (azimuth 0) and a corner (azimuth 45)."""
    assert LAYOUTS[CAMERA_CONDITION_LAYOUT].harmonics == (1, 2, 4)
    az = torch.tensor([0.0, 45.0, 90.0, 180.0, -90.0])
    features = orbit_features(az, torch.zeros(5), False, torch.ones(5))
    fourth = features[:, 4:6]  # (sin 4az, cos 4az)
    torch.testing.assert_close(fourth[[0, 2, 3, 4]], torch.tensor([[0.0, 1.0]]).expand(4, 2), atol=1e-6, rtol=0)
    torch.testing.assert_close(fourth[1], torch.tensor([0.0, -1.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(features[:, 2:4], torch.stack([(2 * az).deg2rad().sin(), (2 * az).deg2rad().cos()], -1))


def test_features_come_from_the_positions_and_wrap_the_azimuth():
    cams = orbit_cameras([20.0, -10.0], [200.0, -160.0])  # the same azimuth, written twice
    features = camera_features(cams, flat=torch.tensor([True, False]))
    torch.testing.assert_close(features[0, :-3], features[1, :-3], atol=1e-6, rtol=0)
    assert features[:, -1].tolist() == [1.0, 0.0]
    flat = torch.tensor([True, False])
    expected = orbit_features(cams.azimuth_deg, cams.elevation_deg, flat, image_scale(cams.radius, cams.fovy_deg))
    torch.testing.assert_close(features, expected, atol=1e-6, rtol=0)
    # the nominal orbit parameters are not read: only where the camera is
    moved = Cameras(cams.c2w, cams.fovy_deg, torch.zeros(2), torch.zeros(2), torch.full((2,), 9.0))
    torch.testing.assert_close(camera_features(moved, flat=True)[:, :-1], features[:, :-1])


def test_image_scale_is_how_large_the_object_looks():
    """Twice as far, half as large; a narrower lens from further away can frame it the same;
    the data set's cameras span about -1..1 once centred and spread."""
    features = camera_features(orbit_cameras([10.0, 10.0], [30.0, 30.0], radius=[2.0, 4.0], fovy_deg=40.0), True)
    scale = features[:, 6] * SCALE_SPREAD + SCALE_CENTRE
    assert scale[0] == pytest.approx(2.0 * float(scale[1]), rel=1e-5)
    wide, narrow = image_scale(torch.tensor([2.0, 4.0]), torch.tensor([90.0, 2.0 * math.degrees(math.atan(0.5))]))
    assert float(wide) == pytest.approx(float(narrow)) == pytest.approx(0.5)
    corners = image_scale(torch.tensor([RADIUS[1], RADIUS[0]]), torch.tensor([FOVY[1], FOVY[0]]))
    normalised = (corners - SCALE_CENTRE) / SCALE_SPREAD
    assert -1.0 < float(normalised[0]) < -0.8 and 0.8 < float(normalised[1]) < 1.0, normalised
    with pytest.raises(ValueError, match="needs the image scale"):
        orbit_features(torch.zeros(1), torch.zeros(1), True)
    assert orbit_features(torch.zeros(1), torch.zeros(1), True, layout=HARMONICS_LAYOUT).shape == (1, 9)


def test_straight_overhead_features_are_finite():
    features = camera_features(orbit_cameras(90.0, 30.0), flat=False)
    assert torch.isfinite(features).all()
    assert features[0, -3] == pytest.approx(1.0) and features[0, -2] == pytest.approx(0.0, abs=1e-6)


def test_layout_values():
    assert parse_camera_condition(None, "m") is None
    assert parse_camera_condition(CAMERA_CONDITION_LAYOUT, "m") == CAMERA_CONDITION_LAYOUT
    assert parse_camera_condition(FIRST_LAYOUT, "m") == FIRST_LAYOUT  # models trained before harmonics still load
    assert parse_camera_condition(HARMONICS_LAYOUT, "m") == HARMONICS_LAYOUT  # and before the image scale
    for value in ("azimuth-elevation-flat/2", True, 5):
        with pytest.raises(DreamerError, match="unknown camera conditioning") as info:
            parse_camera_condition(value, "m")
        assert "\n" not in str(info.value) and CAMERA_CONDITION_LAYOUT in str(info.value)
