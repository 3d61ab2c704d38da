"""Typed, strict configuration: presets are data, and a typo in one is an error.

Every module owns a small config class derived from ``Strict``; the preset schema in
``dreamer/presets.py`` assembles them. Scheduled scalars are ``Ramp`` objects.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from dreamer.errors import DreamerError


class Strict(BaseModel):
    """Unknown keys are errors; values are validated and frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class Ramp(Strict):
    """A scalar that moves linearly from ``v0`` at step ``start`` to ``v1`` at step ``end``.

    Steps are absolute iterations of the stage. ``start == end`` gives a step change.
    """

    start: int = 0
    end: int = 0
    v0: float
    v1: float

    @model_validator(mode="after")
    def _ordered(self) -> Ramp:
        if self.end < self.start:
            raise ValueError(f"Ramp end ({self.end}) is before its start ({self.start})")
        return self

    def at(self, step: int) -> float:
        if step < self.start:
            return self.v0
        if step >= self.end:
            return self.v1
        frac = (step - self.start) / (self.end - self.start)
        return self.v0 + (self.v1 - self.v0) * frac


def scheduled(value: float | Ramp, step: int) -> float:
    """Resolve a plain or scheduled scalar at an iteration."""
    return value.at(step) if isinstance(value, Ramp) else float(value)


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line naming every bad field of a config and what is wrong with it."""
    parts = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = "unknown field" if e["type"] == "extra_forbidden" else e["msg"]
        parts.append(f"{where}: {msg}")
    return f"{source}: " + "; ".join(parts)


def validate(model: type[Strict], data: dict, source: str) -> Strict:
    """Build ``model`` from ``data``; a DreamerError with one line on any mistake."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise DreamerError(format_validation_error(err, source)) from None
