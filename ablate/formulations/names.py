"""The one parser and printer for variant names, as the paper writes them.

Grammar: ``<trajectory>[/<sampler>][/shift(alpha)]``, where ``<sampler>`` is the timestep density.
Trajectories (:data:`TRAJECTORIES`): ``rf``, ``eps/linear``, ``v/linear``, ``eps/cos``, ``v/cos``,
``x0/rf``, ``eps/rf``, ``edm(Pm, Ps)``, ``edm/rf``, ``edm/cos``. Timestep densities: ``uniform``
(the default, omitted when printing), ``lognorm(m, s)``, ``mode(s)``, ``cosmap``.
Any trajectory crosses with any density: ``eps/linear/lognorm(0.00, 1.00)``.

Loss space: a ``<prediction>/<path>`` trajectory regresses its own output by default (``x0/rf``:
x0-MSE, ``eps/rf``: eps-MSE); another loss space is written in parentheses on the prediction,
``<prediction>(<space>)/<path>`` with space ``x0``, ``eps``, ``v`` (= a eps - b x0) or ``velocity``
(= dz/dt, rf's eps - x0). ``x0(velocity)/rf`` is x0-prediction with the velocity-MSE loss (JiT's
recipe); the default space is never printed (``x0(x0)/rf`` prints as ``x0/rf``). ``rf`` and the
EDM family fix their losses (velocity-MSE; EDM's weighted D-MSE).

Canonical printing uses two decimals (``rf/lognorm(0.00, 1.00)``), more only when a value needs them,
so different spellings of one variant group together.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import NamedTuple

from ablate.errors import VariantError
from ablate.formulations.formulation import Formulation
from ablate.formulations.losses import EDM_LOSS, Loss, own_loss
from ablate.formulations.paths import (
    CosinePath,
    EDMCosPath,
    EDMQuantilePath,
    EDMRFPath,
    LinearPath,
    Path,
    RFPath,
)
from ablate.formulations.predictions import LOSS_SPACES, PREDICTIONS
from ablate.formulations.timesteps import DENSITY_HELP, TimestepDensity, Uniform, build_density, format_number, shift


@dataclass(frozen=True)
class Trajectory:
    """A named (path, prediction) pair; ``loss`` None means the prediction's own MSE, any space allowed."""

    path: Path
    prediction: str
    loss: Loss | None = None

    def build(self, name: str, space: str | None) -> Formulation:
        prediction = PREDICTIONS[self.prediction]
        loss = self.loss or (Loss(space) if space else own_loss(prediction))
        return Formulation(name, self.path, prediction, loss)


_RF, _LINEAR, _COS = RFPath(), LinearPath(), CosinePath()  # stateless; LinearPath holds its table
TRAJECTORIES: dict[str, Trajectory] = {
    "rf": Trajectory(_RF, "velocity"),
    "eps/linear": Trajectory(_LINEAR, "eps"),
    "v/linear": Trajectory(_LINEAR, "v"),
    "eps/cos": Trajectory(_COS, "eps"),
    "v/cos": Trajectory(_COS, "v"),
    "x0/rf": Trajectory(_RF, "x0"),
    "eps/rf": Trajectory(_RF, "eps"),
    "edm/rf": Trajectory(EDMRFPath(), "edm", EDM_LOSS),
    "edm/cos": Trajectory(EDMCosPath(), "edm", EDM_LOSS),
}  # plus edm(Pm, Ps), parametrised: see _trajectory

_PLAIN = [k for k, row in TRAJECTORIES.items() if row.loss is None]
_EDM = [k for k, row in TRAJECTORIES.items() if row.loss is not None]
TRAJECTORY_HELP = (
    f"Valid trajectories: {', '.join(_PLAIN)}, edm(Pm, Ps) with any Pm and Ps > 0 "
    f"(Karras' default is edm(-1.20, 1.20)), {', '.join(_EDM)}; a <prediction>/<path> trajectory may "
    f"name its loss space, <prediction>(<space>)/<path> with space {', '.join(LOSS_SPACES)}, "
    "e.g. x0(velocity)/rf."
)
NAME_HELP = (
    "A variant is written <trajectory>[/<sampler>][/shift(alpha)] (<sampler>: the timestep density), "
    "e.g. rf/lognorm(0.00, 1.00), rf/mode(1.29), edm(-1.20, 1.20), eps/linear/lognorm(0.00, 1.00), "
    "x0(velocity)/rf."
)

_TOKEN = re.compile(r"^\s*([a-z_]+)\s*(?:\((.*)\))?\s*$")
_PREDICTION_TOKEN = re.compile(r"^\s*([a-z][a-z0-9]*)\s*(?:\(\s*([^()]*?)\s*\))?\s*$")


class Variant(NamedTuple):
    """A trajectory crossed with a timestep density; unpacks as ``(formulation, timestep_density)``."""

    formulation: Formulation
    timestep_density: TimestepDensity

    @property
    def sampler(self) -> TimestepDensity:
        """The timestep density under its old name (kept: callers and tests read ``.sampler``)."""
        return self.timestep_density

    @property
    def name(self) -> str:
        return variant_name(self.formulation, self.timestep_density)


def _split(name: str) -> list[str]:
    """Split on '/' outside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in name:
        depth += (ch == "(") - (ch == ")")
        if ch == "/" and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts]


def _parse_token(token: str, whole: str) -> tuple[str, list[float]]:
    match = _TOKEN.match(token)
    if not match:
        raise VariantError(f"Cannot read {token!r} in variant {whole!r}. {NAME_HELP} {TRAJECTORY_HELP}")
    kind, arg_text = match.group(1), match.group(2)
    args: list[float] = []
    if arg_text is not None and arg_text.strip():
        for piece in arg_text.split(","):
            try:
                value = float(piece)
            except ValueError:
                raise VariantError(
                    f"{piece.strip()!r} in {token!r} (variant {whole!r}) is not a number. {NAME_HELP}"
                ) from None
            if not math.isfinite(value):
                raise VariantError(f"{token!r} in variant {whole!r} needs finite numbers. {NAME_HELP}")
            args.append(value)
    return kind, args


def _trajectory(tokens: list[str], whole: str) -> tuple[Formulation, int]:
    """The trajectory at the start of ``tokens`` and how many tokens it used."""
    match = _PREDICTION_TOKEN.match(tokens[0])
    if len(tokens) >= 2 and match and f"{match.group(1)}/{tokens[1]}" in TRAJECTORIES:
        key, space = f"{match.group(1)}/{tokens[1]}", match.group(2)
        row = TRAJECTORIES[key]
        if space is None or space == PREDICTIONS[row.prediction].space:
            return row.build(key, None), 2
        if row.loss is not None:
            raise VariantError(f"Trajectory {key!r} in {whole!r} fixes its loss; it takes no loss space. "
                               f"{TRAJECTORY_HELP}")
        if space not in LOSS_SPACES:
            raise VariantError(f"Unknown loss space {space!r} in {tokens[0]!r} (variant {whole!r}); "
                               f"loss spaces: {', '.join(LOSS_SPACES)}. {TRAJECTORY_HELP}")
        return row.build(f"{match.group(1)}({space})/{tokens[1]}", space), 2
    kind, args = _parse_token(tokens[0], whole)
    if kind == "rf" and not args and "(" not in tokens[0]:
        return TRAJECTORIES["rf"].build("rf", None), 1
    if kind == "edm":
        if len(args) != 2:
            raise VariantError(
                f"Trajectory {tokens[0]!r} in {whole!r} needs two arguments, written edm(Pm, Ps) "
                f"(got {len(args)}). {TRAJECTORY_HELP}"
            )
        if args[1] <= 0:
            raise VariantError(f"In {tokens[0]!r} (variant {whole!r}) Ps = {args[1]} must be > 0. {TRAJECTORY_HELP}")
        name = f"edm({format_number(args[0])}, {format_number(args[1])})"
        return Trajectory(EDMQuantilePath(args[0], args[1]), "edm", EDM_LOSS).build(name, None), 1
    raise VariantError(f"Unknown trajectory {tokens[0]!r} in variant {whole!r}. {TRAJECTORY_HELP} {NAME_HELP}")


def _density(tokens: list[str], whole: str) -> TimestepDensity:
    """Timestep-density tokens: ``[<density>][/shift(alpha)]``."""
    density: TimestepDensity = Uniform()
    rest = list(tokens)
    if rest and not rest[0].startswith("shift"):
        kind, args = _parse_token(rest.pop(0), whole)
        density = build_density(kind, args, f"{kind}({', '.join(map(str, args))})" if args else kind)
    if rest:
        kind, args = _parse_token(rest.pop(0), whole)
        if kind != "shift" or len(args) != 1:
            raise VariantError(f"Unexpected {kind!r} in variant {whole!r}. {NAME_HELP} {DENSITY_HELP}")
        density = shift(density, args[0])
    if rest:
        raise VariantError(f"Variant {whole!r} has trailing parts {'/'.join(rest)!r}. {NAME_HELP}")
    return density


def parse_variant(name: str) -> Variant:
    """``parse_variant("rf/lognorm(0.5, 0.6)")`` -> (rf formulation, lognorm(0.50, 0.60) timestep density)."""
    if not isinstance(name, str) or not name.strip():
        raise VariantError(f"Variant name {name!r} is empty. {NAME_HELP} {TRAJECTORY_HELP}")
    tokens = _split(name.strip())
    formulation, used = _trajectory(tokens, name)
    try:
        density = _density(tokens[used:], name)
    except VariantError as err:
        if repr(name) in str(err):
            raise
        raise VariantError(f"In variant {name!r}: {err}") from None
    return Variant(formulation, density)


def parse_timestep_density(name: str) -> TimestepDensity:
    """A timestep density alone, e.g. ``mode(1.29)`` or ``lognorm(0, 1)/shift(3)``."""
    return _density(_split(name.strip()), name)


parse_sampler = parse_timestep_density  # the old name, kept: tests import it


def get_formulation(name: str) -> Formulation:
    """A trajectory by name (``rf``, ``x0(velocity)/rf``, ``edm(-1.2, 1.2)``, ...); no timestep density here."""
    variant = parse_variant(name)
    if not isinstance(variant.timestep_density, Uniform):
        raise VariantError(f"{name!r} names a variant with a timestep density; get_formulation takes a trajectory. "
                           f"Use parse_variant for the pair. {TRAJECTORY_HELP}")
    return variant.formulation


def variant_name(formulation: Formulation, density: TimestepDensity) -> str:
    """Canonical name; the uniform density is implied (``rf``, not ``rf/uniform``)."""
    density_name = density.name
    if density_name == "uniform":
        return formulation.name
    if density_name.startswith("uniform/"):
        density_name = density_name[len("uniform/"):]
    return f"{formulation.name}/{density_name}"


def canonical_variant(name: str) -> str:
    """The canonical spelling of a variant name."""
    return parse_variant(name).name
