"""The one parser and printer for variant names, as the paper writes them.

Grammar: ``<trajectory>[/<sampler>][/shift(alpha)]``. Trajectories: ``rf``, ``eps/linear``,
``v/linear``, ``eps/cos``, ``v/cos``, ``edm(Pm, Ps)``, ``edm/rf``, ``edm/cos``. Samplers:
``uniform`` (the default, omitted when printing), ``lognorm(m, s)``, ``mode(s)``, ``cosmap``.
Any trajectory crosses with any sampler: ``eps/linear/lognorm(0.00, 1.00)``.
Canonical printing uses two decimals (``rf/lognorm(0.00, 1.00)``), more only when a value needs them,
so different spellings of one variant group together.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

from ablate.errors import VariantError
from ablate.formulations.paths import (
    CosinePath,
    EDMCosPath,
    EDMQuantilePath,
    EDMRFPath,
    LinearPath,
    RFPath,
)
from ablate.formulations.predictions import Formulation
from ablate.formulations.timesteps import SAMPLER_HELP, TimestepSampler, Uniform, build_sampler, format_number, shift

TRAJECTORY_HELP = (
    "Valid trajectories: rf, eps/linear, v/linear, eps/cos, v/cos, edm(Pm, Ps) with any Pm and Ps > 0 "
    "(Karras' default is edm(-1.20, 1.20)), edm/rf, edm/cos."
)
NAME_HELP = (
    "A variant is written <trajectory>[/<sampler>][/shift(alpha)], e.g. rf/lognorm(0.00, 1.00), "
    "rf/mode(1.29), edm(-1.20, 1.20), eps/linear/lognorm(0.00, 1.00)."
)

_TOKEN = re.compile(r"^\s*([a-z_]+)\s*(?:\((.*)\))?\s*$")
_TWO_TOKEN = {"eps/linear", "v/linear", "eps/cos", "v/cos", "edm/rf", "edm/cos"}
_PATHS = {"linear": LinearPath(), "cos": CosinePath()}  # stateless; LinearPath holds its table


class Variant(NamedTuple):
    """A trajectory crossed with a timestep sampler; unpacks as ``(formulation, sampler)``."""

    formulation: Formulation
    sampler: TimestepSampler

    @property
    def name(self) -> str:
        return variant_name(self.formulation, self.sampler)


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
    if len(tokens) >= 2 and f"{tokens[0]}/{tokens[1]}" in _TWO_TOKEN:
        key = f"{tokens[0]}/{tokens[1]}"
        if key == "edm/rf":
            return Formulation("edm/rf", EDMRFPath(), "edm"), 2
        if key == "edm/cos":
            return Formulation("edm/cos", EDMCosPath(), "edm"), 2
        prediction, path = key.split("/")
        return Formulation(key, _PATHS[path], prediction), 2
    kind, args = _parse_token(tokens[0], whole)
    if kind == "rf" and not args and "(" not in tokens[0]:
        return Formulation("rf", RFPath(), "velocity"), 1
    if kind == "edm":
        if len(args) != 2:
            raise VariantError(
                f"Trajectory {tokens[0]!r} in {whole!r} needs two arguments, written edm(Pm, Ps) "
                f"(got {len(args)}). {TRAJECTORY_HELP}"
            )
        if args[1] <= 0:
            raise VariantError(f"In {tokens[0]!r} (variant {whole!r}) Ps = {args[1]} must be > 0. {TRAJECTORY_HELP}")
        name = f"edm({format_number(args[0])}, {format_number(args[1])})"
        return Formulation(name, EDMQuantilePath(args[0], args[1]), "edm"), 1
    raise VariantError(f"Unknown trajectory {tokens[0]!r} in variant {whole!r}. {TRAJECTORY_HELP} {NAME_HELP}")


def _sampler(tokens: list[str], whole: str) -> TimestepSampler:
    """Sampler tokens: ``[<sampler>][/shift(alpha)]``."""
    sampler: TimestepSampler = Uniform()
    rest = list(tokens)
    if rest and not rest[0].startswith("shift"):
        kind, args = _parse_token(rest.pop(0), whole)
        sampler = build_sampler(kind, args, f"{kind}({', '.join(map(str, args))})" if args else kind)
    if rest:
        kind, args = _parse_token(rest.pop(0), whole)
        if kind != "shift" or len(args) != 1:
            raise VariantError(f"Unexpected {kind!r} in variant {whole!r}. {NAME_HELP} {SAMPLER_HELP}")
        sampler = shift(sampler, args[0])
    if rest:
        raise VariantError(f"Variant {whole!r} has trailing parts {'/'.join(rest)!r}. {NAME_HELP}")
    return sampler


def parse_variant(name: str) -> Variant:
    """``parse_variant("rf/lognorm(0.5, 0.6)")`` -> (rf formulation, lognorm(0.50, 0.60) sampler)."""
    if not isinstance(name, str) or not name.strip():
        raise VariantError(f"Variant name {name!r} is empty. {NAME_HELP} {TRAJECTORY_HELP}")
    tokens = _split(name.strip())
    formulation, used = _trajectory(tokens, name)
    try:
        sampler = _sampler(tokens[used:], name)
    except VariantError as err:
        if repr(name) in str(err):
            raise
        raise VariantError(f"In variant {name!r}: {err}") from None
    return Variant(formulation, sampler)


def parse_sampler(name: str) -> TimestepSampler:
    """A timestep sampler alone, e.g. ``mode(1.29)`` or ``lognorm(0, 1)/shift(3)``."""
    return _sampler(_split(name.strip()), name)


def get_formulation(name: str) -> Formulation:
    """A trajectory by name (``rf``, ``edm(-1.2, 1.2)``, ...); a sampler part is not allowed here."""
    variant = parse_variant(name)
    if not isinstance(variant.sampler, Uniform):
        raise VariantError(f"{name!r} names a variant with a timestep sampler; get_formulation takes a trajectory. "
                           f"Use parse_variant for the pair. {TRAJECTORY_HELP}")
    return variant.formulation


def variant_name(formulation: Formulation, sampler: TimestepSampler) -> str:
    """Canonical name; the uniform sampler is implied (``rf``, not ``rf/uniform``)."""
    sampler_name = sampler.name
    if sampler_name == "uniform":
        return formulation.name
    if sampler_name.startswith("uniform/"):
        sampler_name = sampler_name[len("uniform/"):]
    return f"{formulation.name}/{sampler_name}"


def canonical_variant(name: str) -> str:
    """The canonical spelling of a variant name."""
    return parse_variant(name).name
