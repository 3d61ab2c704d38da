import pytest

from dreamer.config import Ramp, validate
from dreamer.errors import DreamerError
from dreamer.preset_files import apply_overrides, parse_override, preset_names
from dreamer.presets import RunConfig, load_preset


def test_ramp_is_linear_and_clamped():
    r = Ramp(start=10, end=20, v0=1.0, v1=0.0)
    assert r.at(0) == 1.0 and r.at(15) == pytest.approx(0.5) and r.at(25) == 0.0
    step = Ramp(start=5, end=5, v0=0.98, v1=0.5)
    assert step.at(4) == 0.98 and step.at(5) == 0.5


def test_every_shipped_preset_validates():
    names = preset_names()
    assert {"cpu", "fast"} <= set(names)
    for name in names:
        cfg = load_preset(name)
        assert cfg.description and cfg.expected.time and cfg.expected.memory


def test_a_typo_in_a_preset_is_an_error_naming_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("description: x\nexpected: {time: a, memory: b}\ncoarse:\n  stpes: 10\n")
    with pytest.raises(DreamerError, match=r"coarse\.stpes: unknown field"):
        load_preset(str(bad))


def test_negative_steps_and_bad_types_are_errors():
    with pytest.raises(DreamerError, match=r"coarse\.steps"):
        load_preset("cpu", {"coarse.steps": -5})
    with pytest.raises(DreamerError, match=r"coarse\.objective\.sds\.timesteps: .*t_min < t_max"):
        load_preset("cpu", {"coarse.objective.timesteps.t_min": 0.99})


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(DreamerError, match="unknown preset 'nope': choose one of .*cpu"):
        load_preset("nope")


def test_overrides_parse_yaml_values():
    assert parse_override("coarse.steps=800") == ("coarse.steps", 800)
    assert parse_override("export.formats=[glb]") == ("export.formats", ["glb"])
    data = apply_overrides({"coarse": {"steps": 1}}, {"coarse.steps": 5, "extract.level": 0.3})
    assert data == {"coarse": {"steps": 5}, "extract": {"level": 0.3}}


def test_config_round_trips_through_json():
    cfg = load_preset("fast")
    again = validate(RunConfig, cfg.model_dump(mode="json"), "again")
    assert again == cfg


_TWO_PRIORS = """description: x
expected: {time: a, memory: b}
prior: shapes
coarse: {steps: 10, batch_size: 2}
for_prior:
  shapes:
    coarse: {steps: 20}
"""


def test_for_prior_settings_apply_to_their_prior_only_and_set_still_wins(tmp_path):
    preset = tmp_path / "two.yaml"
    preset.write_text(_TWO_PRIORS)
    assert load_preset(str(preset)).coarse.steps == 20  # the preset's own prior
    assert load_preset(str(preset)).coarse.batch_size == 2  # merged, not replaced
    assert load_preset(str(preset), prior="reference:mug.glb").coarse.steps == 10
    assert load_preset(str(preset), {"prior": "sd21-base"}).coarse.steps == 10
    assert load_preset(str(preset), {"coarse.steps": 5}).coarse.steps == 5


def test_a_typo_in_a_for_prior_section_is_an_error_whichever_prior_runs(tmp_path):
    preset = tmp_path / "typo.yaml"
    preset.write_text(_TWO_PRIORS.replace("steps: 20", "stpes: 20"))
    with pytest.raises(DreamerError, match=r"for_prior\.shapes.*coarse\.stpes: unknown field"):
        load_preset(str(preset), prior="sd21-base")
    preset.write_text(_TWO_PRIORS.replace("coarse: {steps: 20}", "prior: sd21-base"))
    with pytest.raises(DreamerError, match="for_prior must map prior names to settings"):
        load_preset(str(preset))
