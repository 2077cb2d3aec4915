"""A control setting: how one set of samples is drawn from a trained cell (the paper's "setting").

One frozen value, :class:`Setting` (solver, steps, cfg, time grid, weights), passed whole from the
grid (:meth:`ablate.config.grid.EvalConfig.all_settings`) to evaluation, into the record and to the
leaderboard. Words: the *solver* is the Euler loop; a *setting* is one group of its options; the
distribution of training times is the *timestep density* (never "sampler").

Conventions:

- ``cfg`` is the guidance weight w in ``v_u + w (v_c - v_u)`` (1 = no guidance), stored as a float.
- ``time_grid``: ``own`` (uniform in the formulation's t) or ``rf`` (uniform in rf noise level).
- ``weights``: ``ema`` or ``raw``.
- :attr:`Setting.key` is stable and names the record file: ``50steps-cfg5.0-own-ema`` (the cfg as
  Python writes a float); a solver other than Euler would prefix its name (``heun-50steps-...``).
- A record stores the fields of :meth:`Setting.fields` at its top level; records written before
  ``solver`` existed read back as Euler.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, Mapping

from ablate.errors import ConfigError
from ablate.config.schema import opt

SOLVERS = ("euler",)
TIME_GRIDS = ("own", "rf")
WEIGHTS = ("ema", "raw")
FIELDS = ("solver", "steps", "cfg", "time_grid", "weights")  # the record keys of a setting
_KEY = re.compile(r"(?:(?P<solver>[a-z]+)-)?(?P<steps>\d+)steps-cfg(?P<cfg>[0-9.e+-]+|inf)-(?P<grid>[a-z]+)-(?P<w>[a-z]+)")


@dataclass(frozen=True, order=True)
class Setting:
    """One control setting. In a grid file only ``steps`` and ``cfg`` are written per item; the
    time grid and the weights come from ``eval.time_grid`` and ``eval.weights``."""

    steps: int = opt(ge=1)
    cfg: float = opt(ge=0)
    time_grid: Literal["own", "rf"] = opt("own", yaml=False)
    weights: Literal["ema", "raw"] = opt("ema", yaml=False)
    solver: Literal["euler"] = opt("euler", yaml=False)

    def __post_init__(self) -> None:
        try:
            steps, cfg = int(self.steps), float(self.cfg)
        except (TypeError, ValueError):
            steps, cfg = -1, -1.0
        problems = [f"{name}={value!r} (allowed: {allowed})" for name, value, ok, allowed in (
            ("steps", self.steps, steps >= 1 and steps == self.steps, "an integer >= 1"),
            ("cfg", self.cfg, cfg >= 0, "a number >= 0"),
            ("time_grid", self.time_grid, self.time_grid in TIME_GRIDS, " or ".join(TIME_GRIDS)),
            ("weights", self.weights, self.weights in WEIGHTS, " or ".join(WEIGHTS)),
            ("solver", self.solver, self.solver in SOLVERS, " or ".join(SOLVERS)),
        ) if not ok]
        if problems:
            raise ConfigError(f"A sampling setting has {'; '.join(problems)}.")
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "cfg", cfg)

    @property
    def key(self) -> str:
        """Stable text key, the record file's stem: ``50steps-cfg5.0-own-ema``."""
        prefix = "" if self.solver == "euler" else f"{self.solver}-"
        return f"{prefix}{self.steps}steps-cfg{self.cfg!r}-{self.time_grid}-{self.weights}"

    @property
    def label(self) -> str:
        """Short text for tables: ``50 steps, cfg 5, own grid, EMA``."""
        return f"{self.steps} steps, cfg {self.cfg:g}, {self.time_grid} grid, {self.weights.upper()}"

    def fields(self) -> dict[str, Any]:
        """The record keys of this setting (:data:`FIELDS`)."""
        return {name: getattr(self, name) for name in FIELDS}

    @classmethod
    def from_fields(cls, record: Mapping[str, Any]) -> "Setting":
        """The setting of a record (old records have no ``solver``: Euler)."""
        return cls(steps=record["steps"], cfg=record["cfg"], time_grid=record["time_grid"],
                   weights=record["weights"], solver=record.get("solver") or "euler")

    @classmethod
    def from_key(cls, key: str) -> "Setting":
        """Inverse of :attr:`key`."""
        match = _KEY.fullmatch(key)
        if not match:
            raise ConfigError(f"{key!r} is not a setting key; allowed: '<steps>steps-cfg<cfg>-<time grid>-<weights>', "
                              "e.g. '50steps-cfg5.0-own-ema'.")
        return cls(int(match["steps"]), float(match["cfg"]), match["grid"], match["w"], match["solver"] or "euler")
