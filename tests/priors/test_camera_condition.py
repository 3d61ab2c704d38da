"""Camera features for camera-conditioned UNets, and the model_index.json value that declares them."""

import math

import pytest
import torch

from dreamer.cameras import Cameras, orbit_cameras
from dreamer.errors import DreamerError
from dreamer.priors.camera_condition import (
    AZIMUTH_HARMONICS,
    CAMERA_CONDITION_LAYOUT,
    FIRST_LAYOUT,
    angle_features,
    camera_features,
    feature_count,
    parse_camera_condition,
)


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
    newest = camera_features(cams, flat=True)
    assert newest.shape == (4, feature_count()) == (4, 9)
    # the newest layout extends the first: the same first harmonic, elevation and flat columns
    torch.testing.assert_close(newest[:, :2], expected[:, :2], atol=1e-6, rtol=0)
    torch.testing.assert_close(newest[:, -3:], expected[:, 2:], atol=1e-6, rtol=0)


def test_azimuth_harmonics_tell_a_face_from_a_corner_and_repeat_with_a_square():
    """A cube's look repeats every 90 degrees: its features (the 4th harmonic) must repeat too,
    and must differ between a face (azimuth 0) and a corner (azimuth 45)."""
    assert AZIMUTH_HARMONICS[CAMERA_CONDITION_LAYOUT] == (1, 2, 4)
    az = torch.tensor([0.0, 45.0, 90.0, 180.0, -90.0])
    features = angle_features(az, torch.zeros(5), False)
    fourth = features[:, 4:6]  # (sin 4az, cos 4az)
    torch.testing.assert_close(fourth[[0, 2, 3, 4]], torch.tensor([[0.0, 1.0]]).expand(4, 2), atol=1e-6, rtol=0)
    torch.testing.assert_close(fourth[1], torch.tensor([0.0, -1.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(features[:, 2:4], torch.stack([(2 * az).deg2rad().sin(), (2 * az).deg2rad().cos()], -1))


def test_features_come_from_the_positions_and_wrap_the_azimuth():
    cams = orbit_cameras([20.0, -10.0], [200.0, -160.0])  # the same azimuth, written twice
    features = camera_features(cams, flat=torch.tensor([True, False]))
    torch.testing.assert_close(features[0, :-3], features[1, :-3], atol=1e-6, rtol=0)
    assert features[:, -1].tolist() == [1.0, 0.0]
    torch.testing.assert_close(
        features, angle_features(cams.azimuth_deg, cams.elevation_deg, torch.tensor([True, False])), atol=1e-6, rtol=0
    )
    # the nominal angles are not read: only where the camera is
    moved = Cameras(cams.c2w, cams.fovy_deg, torch.zeros(2), torch.zeros(2), cams.radius)
    torch.testing.assert_close(camera_features(moved, flat=True)[:, :-1], features[:, :-1])


def test_straight_overhead_features_are_finite():
    features = camera_features(orbit_cameras(90.0, 30.0), flat=False)
    assert torch.isfinite(features).all()
    assert features[0, -3] == pytest.approx(1.0) and features[0, -2] == pytest.approx(0.0, abs=1e-6)


def test_layout_values():
    assert parse_camera_condition(None, "m") is None
    assert parse_camera_condition(CAMERA_CONDITION_LAYOUT, "m") == CAMERA_CONDITION_LAYOUT
    assert parse_camera_condition(FIRST_LAYOUT, "m") == FIRST_LAYOUT  # models trained before harmonics still load
    for value in ("azimuth-elevation-flat/2", True, 5):
        with pytest.raises(DreamerError, match="unknown camera conditioning") as info:
            parse_camera_condition(value, "m")
        assert "\n" not in str(info.value) and CAMERA_CONDITION_LAYOUT in str(info.value)
