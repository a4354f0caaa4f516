"""The one reader of profile files: TOML in, a checked, frozen `ProfileConfig` out.

It refuses unknown keys and wrongly typed values with the file and the key, merges a file over the one
it `extends` (tables merged key by key, other values replaced), and fills what no file gives from the
schema's defaults (profile_config.py). The files live beside the engine that loads them
(avatar/profiles/); training reads the same files through `read_profile`.
"""

from __future__ import annotations

import collections.abc
import tomllib
import typing
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import Any

from .profile_config import ProfileConfig, ProfileConfigError
from .sampler import GUIDANCE_CONDITIONS, GuidancePhase, GuidancePlan, GuidanceTerm

PROFILE_DIR = Path(__file__).resolve().parent.parent / "avatar" / "profiles"


def profile_names(directory: Path = PROFILE_DIR) -> list[str]:
    return sorted(p.stem for p in Path(directory).glob("*.toml"))


def read_profile(name: str, directory: Path = PROFILE_DIR) -> ProfileConfig:
    """The profile `name` (`<directory>/<name>.toml` merged over what it extends), checked and typed."""
    path = Path(directory) / f"{name}.toml"
    if not path.is_file():
        raise ProfileConfigError(f"unknown profile {name!r}; known profiles: {', '.join(profile_names(directory))}")
    return _build(ProfileConfig, {**_read_merged(path, ()), "name": name}, "", str(path))


def _read_merged(path: Path, chain: tuple[Path, ...]) -> dict:
    if path in chain:
        raise ProfileConfigError(f"{path}: `extends` loops back to itself ({' -> '.join(p.stem for p in chain)})")
    try:
        table = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ProfileConfigError(f"profile file {path} is malformed: {exc}") from exc
    table = _normalise(table, ProfileConfig, "", str(path))
    base = table.get("extends")
    if base is None:
        return table
    base_path = path.parent / f"{base}.toml"
    if not base_path.is_file():
        raise ProfileConfigError(f"{path}: extends unknown profile {base!r}")
    return _merge(_read_merged(base_path, chain + (path,)), table)


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _schema(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls) if f.name != "name"}


def _normalise(value: Any, hint: Any, key: str, source: str) -> Any:
    """`value` checked against `hint` and converted (lists to tuples, ints to floats); a dataclass's
    table stays a dict (files are merged before they are built). `key` is the dotted key so far."""
    def wrong(expected: str) -> ProfileConfigError:
        return ProfileConfigError(f"{source}: {key} must be {expected}, not {value!r}")

    if hint is GuidancePlan:
        return _guidance(value, key, source)
    if is_dataclass(hint):
        if not isinstance(value, dict):
            raise wrong("a table")
        schema = _schema(hint)
        out = {}
        for k, v in value.items():
            where = f"{key}.{k}" if key else k
            if k not in schema:
                raise ProfileConfigError(f"{source}: unknown key {where!r}; "
                                         f"{'[' + key + ']' if key else 'the top level'} takes: {', '.join(schema)}")
            out[k] = _normalise(v, schema[k], where, source)
        return out
    args = typing.get_args(hint)
    if type(None) in args:  # X | None: TOML has no null, so a given value is an X
        return _normalise(value, next(a for a in args if a is not type(None)), key, source)
    if hint in (bool, str):
        if not isinstance(value, hint):
            raise wrong("true or false" if hint is bool else "a string")
        return value
    if hint in (int, float):
        number = isinstance(value, int if hint is int else (int, float)) and not isinstance(value, bool)
        if not number:
            raise wrong("an integer" if hint is int else "a number")
        return hint(value)
    if typing.get_origin(hint) is tuple:
        fixed = Ellipsis not in args
        if not isinstance(value, list) or (fixed and len(value) != len(args)):
            raise wrong(f"a list of {len(args)}" if fixed else "a list")
        return tuple(_normalise(v, args[i] if fixed else args[0], f"{key}[{i}]", source) for i, v in enumerate(value))
    if typing.get_origin(hint) is collections.abc.Mapping:
        if not isinstance(value, dict):
            raise wrong("a table")
        return value
    raise TypeError(f"no rule for {hint!r}")  # a schema field of a type the reader does not know


def _guidance(phases: Any, key: str, source: str) -> GuidancePlan:
    """[{min_sigma = 0.6, audio = 2.5, negative = 1.5}, {min_sigma = 0.0}] -> a GuidancePlan."""
    allowed = ("min_sigma",) + tuple(GUIDANCE_CONDITIONS)
    if not isinstance(phases, list) or not all(isinstance(p, dict) for p in phases):
        raise ProfileConfigError(f"{source}: {key} must be a list of tables, not {phases!r}")
    out = []
    for i, phase in enumerate(phases):
        values = {}
        for k, v in phase.items():
            if k not in allowed:
                raise ProfileConfigError(f"{source}: unknown key '{key}[{i}].{k}'; a phase takes: {', '.join(allowed)}")
            values[k] = _normalise(v, float, f"{key}[{i}].{k}", source)
        if "min_sigma" not in values:
            raise ProfileConfigError(f"{source}: missing key '{key}[{i}].min_sigma'")
        min_sigma = values.pop("min_sigma")
        out.append(GuidancePhase(min_sigma, tuple(GuidanceTerm(k, v) for k, v in values.items())))
    return GuidancePlan(tuple(out))


def _build(cls, table: dict, key: str, source: str):
    """Instantiate `cls` from a normalised table; a missing required key is an error naming it."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in fields(cls):
        where = f"{key}.{f.name}" if key else f.name
        if f.name in table:
            value = table[f.name]
            table_of_a_section = isinstance(value, dict) and is_dataclass(hints[f.name])
            kwargs[f.name] = _build(hints[f.name], value, where, source) if table_of_a_section else value
        elif f.default is MISSING and f.default_factory is MISSING:
            raise ProfileConfigError(f"{source}: missing key {where!r} (in the file or the profile it extends)")
    try:
        return cls(**kwargs)
    except ProfileConfigError as exc:
        raise ProfileConfigError(f"{source}: {exc}") from None
