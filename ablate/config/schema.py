"""Reading YAML into frozen dataclasses, with checks from field metadata and located errors.

The schema is the dataclasses themselves: a field's type says what a value may be and its
:func:`opt` metadata adds checks. Every problem is one :class:`~ablate.errors.ConfigError`
paragraph naming the file and line (or the command-line option that set the key), the key path
(``eval.settings[2].steps``), the bad value and what is allowed. Conventions:

- ``1e-4`` is read as a number (YAML 1.2), not as text as plain PyYAML would.
- A duplicate key in a mapping is an error; a null (empty) section means "all defaults".
- Fields with ``yaml=False`` metadata are not file keys: never read, never written by :func:`plain`.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import types
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Any, Literal, NoReturn, Union, get_args, get_origin, get_type_hints

import yaml

from ablate.errors import SHORT, AblateError, ConfigError, shorten

KeyPath = tuple[Union[str, int], ...]


def opt(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, **checks: Any) -> Any:
    """A dataclass field with validation metadata: ge/gt/lt bounds, choices (a callable giving the
    allowed names), convert (str -> canonical str; an AblateError it raises is reported as not a
    valid ``invalid``, default "value"), pattern, what (description of one item, or of a mapping),
    unique/nonempty (lists), yaml=False (not a file key)."""
    return field(default=default, default_factory=factory, metadata=checks)


class _Loader(yaml.SafeLoader):
    """Safe YAML with YAML 1.2 floats: ``1e-4`` and ``1.0e4`` are numbers."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


MAX_FILE_BYTES = 256 << 10  # a grid file is a few kB; the largest shipped one is under 5 kB
MAX_DEPTH = 32             # nesting of mappings and lists (a grid needs 4)
MAX_NAME = 1000           # characters of a name (a variant) before it is parsed
MAX_NODES = 100_000        # values in the document with every alias expanded (a "billion laughs" has 10^9)


def read_yaml(file: Path, label: str, hint: str = "") -> tuple[Any, dict[KeyPath, int]]:
    """The document and the line of every key path (duplicate keys are an error). ``label`` names
    the kind of file in errors (``grid file``); ``hint`` ends the invalid-YAML advice (``; ...``).

    Bounded before anything is built: at most :data:`MAX_FILE_BYTES` bytes, :data:`MAX_DEPTH` levels of
    nesting and :data:`MAX_NODES` values once aliases are expanded, and no alias inside the value it names;
    anything else is one :class:`ConfigError` paragraph, in time and memory proportional to the file."""
    try:
        size = file.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ConfigError(f"{label[:1].upper()}{label[1:]} {file} is {size:,} bytes; allowed: at most "
                              f"{MAX_FILE_BYTES:,} bytes (a grid file is a few kB). Is it the right file?")
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"Cannot read {label} {file}: {err}. It must be a readable UTF-8 YAML file.") from None
    data, node = parse_yaml(text, file, label, hint)
    lines: dict[KeyPath, int] = {}
    if node is not None:
        _collect_lines(node, (), lines, file)
    return data, lines


def parse_yaml(text: str, source: Path | str, label: str, hint: str = "") -> tuple[Any, yaml.Node | None]:
    """The value of YAML ``text`` and its node, bounded as :func:`read_yaml` says; ``source`` and ``label`` name
    where the text came from in errors (a file, or a command-line option)."""
    file = source
    try:
        _check_nesting(text, file, label)
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is not None:
                _check_expansion(node, file, label)
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = " ".join(f"{getattr(err, 'context', '') or ''} {getattr(err, 'problem', '') or err}".split())
        raise ConfigError(f"{label[:1].upper()}{label[1:]} {file}{where} is not valid YAML ({shorten(what, 300)}). "
                          f"Check the indentation, colons and quotes there{hint}.") from None
    return data, node


def _check_nesting(text: str, file: Path | str, label: str) -> None:
    """Refuse nesting deeper than :data:`MAX_DEPTH` from the event stream (the parser does not recurse; the
    composer and the checks after it do, so a 5,000-deep list must stop here)."""
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                line = event.start_mark.line + 1
                raise ConfigError(f"{file}, line {line}: the {label} nests lists and mappings more than {MAX_DEPTH} "
                                  "levels deep; allowed: at most {MAX_DEPTH} levels (a grid file needs 4).")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _check_expansion(root: yaml.Node, file: Path | str, label: str) -> None:
    """Refuse an alias used inside the value it names (a value containing itself) and a document of more than
    :data:`MAX_NODES` values with its aliases expanded; each node is counted once (memoised), so this is linear
    in the file, while expanding a "billion laughs" file would take gigabytes."""
    size: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            open_nodes.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in _children(node))
            if size[key] > MAX_NODES:
                raise ConfigError(f"{file}, line {node.start_mark.line + 1}: the {label} holds more than {MAX_NODES:,} "
                                  "values once its aliases (*name) are expanded; allowed: a grid of that size at most "
                                  "(aliases that repeat aliases multiply: a few lines can stand for billions).")
            continue
        if key in size:
            continue
        if key in open_nodes:
            raise ConfigError(f"{file}, line {node.start_mark.line + 1}: an alias (*name) is used inside the value "
                              f"its anchor (&name) names, so the value would contain itself; allowed: aliases of "
                              "values defined before and outside them.")
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _collect_lines(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], file: Path) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[KeyPath] = set()
        for key_node, value_node in node.value:
            key = (*path, str(key_node.value))
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(f"{file}, line {line}: key `{_fmt(key)}` appears twice (also on line {lines[key]}); "
                                  "allowed: each key once per mapping.")
            seen.add(key)
            lines[key] = line
            _collect_lines(value_node, key, lines, file)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _collect_lines(item, (*path, i), lines, file)


_KINDS = {str: "text", bool: "a boolean", int: "an integer", float: "a number", list: "a list", dict: "a mapping",
          type(None): "null"}


def _fmt(path: KeyPath) -> str:
    """``("eval", "settings", 2, "steps")`` -> ``eval.settings[2].steps``."""
    out = ""
    for key in path:
        key = key if isinstance(key, int) or len(str(key)) <= SHORT else shorten(key)
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


def _yaml_keys(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.metadata.get("yaml", True)]


def _describe(tp: Any, md: Mapping[str, Any]) -> str:
    """What a value of type ``tp`` with checks ``md`` may be, in words."""
    origin, args = get_origin(tp), get_args(tp)
    if dataclasses.is_dataclass(tp):
        return f"a mapping with keys {', '.join(_yaml_keys(tp))}"
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a, md) for a in args if a is not type(None)) + " or null"
    if origin is tuple:
        item = _describe(args[0], md)
        if args[-1] is not Ellipsis:
            return f"a list of {len(args)} items, each {item}"
        extra = "".join(x for x, on in ((" non-empty", md.get("nonempty")), (" repeat-free", md.get("unique"))) if on)
        return f"a{extra} list, each item {item}"
    if origin is dict:
        return md.get("what") or "a mapping from names to mappings"
    if origin is Literal:
        return "one of " + ", ".join(str(a).lower() if isinstance(a, bool) else repr(a) for a in args)
    if "choices" in md and md["choices"]():
        return "one of " + ", ".join(repr(a) for a in md["choices"]())
    text = md.get("what") or {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[tp]
    bounds = [f"{op} {md[k]}" for k, op in (("ge", ">="), ("gt", ">"), ("lt", "<")) if k in md]
    return text + (" " + " and ".join(bounds) if bounds else "")


class Reader:
    """Builds dataclasses from raw YAML values; errors name the file, line and key path.

    ``lines`` maps key paths to file lines (from :func:`read_yaml`); ``origins`` maps key paths set
    on the command line to their flag; ``document`` names the whole file in errors (``the grid``).
    """

    def __init__(self, file: str, lines: dict[KeyPath, int], origins: dict[KeyPath, str], document: str) -> None:
        self.file, self.lines, self.origins, self.document = file, lines, origins, document

    def where(self, path: KeyPath) -> str:
        for n in range(len(path), -1, -1):
            if path[:n] in self.origins:
                return f"Command-line option {self.origins[path[:n]]} (applied to {self.file})"
        line = next((self.lines[path[:n]] for n in range(len(path), -1, -1) if path[:n] in self.lines), None)
        return f"{self.file}, line {line}" if line else self.file

    def fail(self, path: KeyPath, message: str) -> NoReturn:
        raise ConfigError(f"{self.where(path)}: {message}")

    def bad(self, path: KeyPath, value: Any, allowed: str, why: str = "") -> NoReturn:
        key = f"`{_fmt(path)}`" if path else self.document
        self.fail(path, f"{key} is {shorten(value)}{why}; allowed: {allowed}.")

    def build(self, cls: type, raw: Any, path: KeyPath) -> Any:
        keys = _yaml_keys(cls)
        raw = {} if raw is None and path else raw  # an empty section means "all defaults"
        if not isinstance(raw, Mapping):
            self.bad(path, raw, _describe(cls, {}))
        for key in raw:
            if key not in keys:
                close = difflib.get_close_matches(str(key), keys, n=1, cutoff=0.6) if len(str(key)) <= SHORT else []
                hint = f" Did you mean `{_fmt((*path, close[0]))}`?" if close else ""
                scope = f"in `{_fmt(path)}`" if path else "at the top level"
                self.fail((*path, str(key)), f"unknown key `{_fmt((*path, str(key)))}`.{hint} "
                                             f"Allowed keys {scope}: {', '.join(keys)}.")
        hints = get_type_hints(cls)
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name in raw:
                kwargs[f.name] = self.value(raw[f.name], hints[f.name], (*path, f.name), f.metadata)
            elif f.metadata.get("yaml", True) and f.default is f.default_factory is dataclasses.MISSING:
                self.fail(path, f"the required key `{_fmt((*path, f.name))}` is missing; allowed: "
                                f"{_describe(hints[f.name], f.metadata)}.")
        return cls(**kwargs)

    def value(self, v: Any, tp: Any, path: KeyPath, md: Mapping[str, Any], shown: Any = None) -> Any:
        shown = shown or tp
        origin, args = get_origin(tp), get_args(tp)
        if dataclasses.is_dataclass(tp):
            return self.build(tp, v, path)
        if origin in (Union, types.UnionType):
            return None if v is None else self.value(v, next(a for a in args if a is not type(None)), path, md, tp)
        if origin is tuple:
            return self.sequence(v, args, path, md, shown)
        if origin is dict and get_origin(args[1]) is not dict:
            return self.mapping(v, args[1], path, md)
        if origin is dict:
            if not isinstance(v, Mapping) or not all(isinstance(o, Mapping) for o in v.values()):
                self.bad(path, v, _describe(tp, md))
            try:
                json.dumps(v)
            except (TypeError, ValueError):
                self.bad(path, v, "plain values (numbers, strings, lists, mappings)", " (not JSON-serialisable)")
            return {str(k): dict(o) for k, o in v.items()}
        if origin is Literal:  # booleans match only booleans (1 is not True here)
            if not any(v is a if isinstance(a, bool) or isinstance(v, bool) else v == a for a in args):
                self.bad(path, v, _describe(shown, md))
            return v
        if tp is bool:
            ok = isinstance(v, bool)
        elif tp is int:
            ok = not isinstance(v, bool) and (isinstance(v, int) or isinstance(v, float) and v.is_integer())
        elif tp is float:
            ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
        else:
            ok = isinstance(v, str)
        if not ok:
            self.bad(path, v, _describe(shown, md), f" ({_KINDS.get(type(v), type(v).__name__)})")
        v = tp(v)
        if ("ge" in md and v < md["ge"]) or ("gt" in md and v <= md["gt"]) or ("lt" in md and v >= md["lt"]):
            self.bad(path, v, _describe(shown, md), " (out of range)")
        if "pattern" in md and not re.fullmatch(md["pattern"], v):
            self.bad(path, v, _describe(shown, md))
        names = md["choices"]() if "choices" in md else ()
        if names and v not in names:
            close = difflib.get_close_matches(v, names, n=1) if len(v) <= SHORT else []
            self.bad(path, v, _describe(shown, md), f" (did you mean {close[0]!r}?)" if close else "")
        if "convert" in md:
            if len(v) > MAX_NAME:
                self.bad(path, v, _describe(shown, md), f" (longer than {MAX_NAME} characters)")
            try:
                v = md["convert"](v)
            except AblateError as err:
                self.fail(path, f"`{_fmt(path)}` is {shorten(v)}, which is not a valid {md.get('invalid', 'value')}: "
                                f"{err}")
        return v

    def mapping(self, v: Any, value_type: Any, path: KeyPath, md: Mapping[str, Any]) -> dict[str, Any]:
        """A mapping of names to plain values (``dict[str, float]``): each value checked with the field's bounds,
        each name with its ``keys`` converter (e.g. to a canonical variant name; two spellings of one are an error)."""
        if not isinstance(v, Mapping):
            self.bad(path, v, _describe(dict[str, value_type], md))
        bounds = {k: md[k] for k in ("ge", "gt", "lt") if k in md}
        out: dict[str, Any] = {}
        spelled: dict[str, Any] = {}
        for key, item in v.items():
            name = self.value(key, str, (*path, str(key)), {"what": "a name"})
            if "keys" in md:
                try:
                    name = md["keys"](name)
                except AblateError as err:
                    self.fail((*path, str(key)), f"the key {shorten(key)} of `{_fmt(path)}` is not a valid name: {err}")
            if name in out:
                self.fail((*path, str(key)), f"`{_fmt(path)}` names {shorten(name)} twice ({shorten(spelled[name])} and "
                                             f"{shorten(key)}); allowed: each name once.")
            out[name], spelled[name] = self.value(item, value_type, (*path, str(key)), bounds), key
        return out

    def sequence(self, v: Any, args: tuple[Any, ...], path: KeyPath, md: Mapping[str, Any], shown: Any) -> tuple:
        variadic = args[-1] is Ellipsis
        if not isinstance(v, list) or (not variadic and len(v) != len(args)):
            self.bad(path, v, _describe(shown, md))
        if md.get("nonempty") and not v:
            self.bad(path, v, _describe(shown, md), " (empty)")
        items = tuple(self.value(x, args[0] if variadic else args[i], (*path, i), md) for i, x in enumerate(v))
        if md.get("unique"):
            first: dict[Any, int] = {}
            for i, item in enumerate(items):
                if item in first:
                    j = first[item]
                    same = "" if v[i] == v[j] else f" (both are {shorten(item)} in canonical form)"
                    self.fail((*path, i), f"`{_fmt((*path, i))}` = {shorten(v[i])} repeats `{_fmt((*path, j))}` = "
                                          f"{shorten(v[j])}{same}; allowed: each item once.")
                first[item] = i
        return items


def plain(obj: Any) -> Any:
    """A dataclass (or list/dict of them) as plain JSON types, file keys only."""
    if dataclasses.is_dataclass(obj):
        return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.metadata.get("yaml", True)}
    if isinstance(obj, (tuple, list)):
        return [plain(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): plain(x) for k, x in obj.items()}
    return obj
