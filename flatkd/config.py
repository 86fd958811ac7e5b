"""Config is data: nested dataclasses whose defaults are the paper's settings.

Resolution order: dataclass defaults → YAML file (``yaml.safe_load``, no executable tags) →
``--set key=value`` overrides with dotted keys (``hessian.samples=256``). Values are coerced to
the declared field type; an unknown key or a value of the wrong type raises
:class:`~flatkd.errors.FlatkdError` naming the valid keys.
"""
from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from .errors import FlatkdError

def to_plain(cfg: Any) -> dict:
    """A dataclass config as a plain dict (only dict/list/str/int/float/bool/None)."""
    return dataclasses.asdict(cfg)


def load_yaml(path: str | Path) -> dict:
    """Read a YAML config file as a plain mapping (safe loader only)."""
    p = Path(path)
    if not p.is_file():
        raise FlatkdError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise FlatkdError(f"config file {p} is not valid YAML: {str(e).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise FlatkdError(f"config file {p} must hold a mapping of keys to values")
    return data


def parse_value(text: str, key: str) -> Any:
    """A ``--set`` value (or one item of a comma-separated list) as YAML with the safe loader:
    ``"0.1"`` → 0.1, ``"[1, 2]"`` → [1, 2], ``""`` → ``""``. Not valid YAML, or a YAML tag the
    safe loader refuses (``!!python/...``) → FlatkdError naming the key."""
    if text == "":
        return ""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        what = "carries a YAML tag that is not plain data" if isinstance(
            e, yaml.constructor.ConstructorError) else "is not valid YAML"
        raise FlatkdError(f"--set {key}={text}: the value {what} (e.g. 0.1, true, [1, 2], "
                          "or a quoted string)") from None


def parse_overrides(items: Iterable[str]) -> dict[str, str]:
    """``["a.b=1", "c=x"]`` → ``{"a.b": "1", "c": "x"}`` (values still strings)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise FlatkdError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def apply_overrides(cfg: Any, overrides: Mapping[str, Any]) -> Any:
    """Set dotted keys on a dataclass config in place; string values are parsed as YAML scalars."""
    for key, value in overrides.items():
        if isinstance(value, str):
            value = parse_value(value, key)
        _set_dotted(cfg, key, value)
    return cfg


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping → dotted keys: ``{"a": {"b": 1}}`` → ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def apply_file(cfg: Any, path: str | Path) -> Any:
    """Apply a YAML config file's (nested) keys to ``cfg`` in place."""
    return apply_overrides(cfg, flatten(load_yaml(path)))


def valid_keys(cfg: Any, prefix: str = "") -> list[str]:
    """All dotted leaf keys of a dataclass config."""
    keys = []
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            keys += valid_keys(v, prefix + f.name + ".")
        else:
            keys.append(prefix + f.name)
    return keys


def field_docs(cls: type) -> dict[str, str]:
    """Meaning of each field of a config dataclass, read from its docstring, whose entries are
    written ``name: meaning`` (continuation lines indented deeper)."""
    docs: dict[str, str] = {}
    names = {f.name for f in dataclasses.fields(cls)}
    current, indent = None, 0
    for line in inspect.cleandoc(cls.__doc__ or "").splitlines():
        match = re.match(r"^(\s*)(\w+):\s+(.*)$", line)
        if match and match.group(2) in names and (current is None or len(match.group(1)) <= indent):
            current, indent = match.group(2), len(match.group(1))
            docs[current] = match.group(3).strip()
        elif current is not None and line.strip() and len(line) - len(line.lstrip()) > indent:
            docs[current] += " " + line.strip()
        else:
            current = None
    return docs


def describe(cfg: Any, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted key, current value, meaning) of every leaf key of a dataclass config."""
    rows = []
    docs = field_docs(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            rows += describe(value, prefix + f.name + ".")
        else:
            rows.append((prefix + f.name, value, docs.get(f.name, "").replace("``", "")))
    return rows


def _set_dotted(cfg: Any, key: str, value: Any) -> None:
    parts = key.split(".")
    target = cfg
    for i, part in enumerate(parts):
        names = {f.name: f for f in dataclasses.fields(target)}
        if part not in names:
            raise FlatkdError(
                f"unknown config key {key!r}; valid keys: {', '.join(valid_keys(cfg))}"
            )
        if i == len(parts) - 1:
            current = getattr(target, part)
            if dataclasses.is_dataclass(current):
                if not isinstance(value, Mapping):
                    raise FlatkdError(f"config key {key!r} is a section; set one of its keys")
                _apply_mapping(current, value, prefix=key + ".")
            else:
                hint = typing.get_type_hints(type(target))[part]
                setattr(target, part, _coerce(value, hint, key))
        else:
            target = getattr(target, part)
            if not dataclasses.is_dataclass(target):
                raise FlatkdError(f"config key {key!r}: {'.'.join(parts[:i + 1])} is not a section")


def _apply_mapping(cfg: Any, data: Mapping[str, Any], prefix: str) -> None:
    for k, v in data.items():
        sub = getattr(cfg, str(k), None) if hasattr(cfg, str(k)) else None
        if dataclasses.is_dataclass(sub) and isinstance(v, Mapping):
            _apply_mapping(sub, v, prefix + f"{k}.")
        else:
            try:
                _set_dotted(cfg, str(k), v)
            except FlatkdError as e:
                raise FlatkdError(str(e).replace(repr(str(k)), repr(prefix + str(k)), 1)) from None


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except FlatkdError as e:
                errors.append(str(e))
        raise FlatkdError(errors[0] if errors else f"config key {key!r}: bad value {value!r}")
    if origin in (list, tuple):
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            value = [value] if not isinstance(value, str) or "," not in value else [
                parse_value(v, key) for v in value.split(",")]
        if not isinstance(value, (list, tuple)):
            raise FlatkdError(f"config key {key!r} expects a list, got {value!r}")
        item = args[0] if args else Any
        return [_coerce(v, item, key) for v in value]
    if origin is typing.Literal:
        if value not in args:
            raise FlatkdError(
                f"config key {key!r}: {value!r} is not valid; valid choices: "
                + ", ".join(map(str, args)))
        return value
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise FlatkdError(f"config key {key!r} expects true/false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise FlatkdError(f"config key {key!r} expects an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        try:
            return float(value)     # strings such as "1e-3" (YAML 1.1 reads them as str)
        except (TypeError, ValueError):
            raise FlatkdError(f"config key {key!r} expects a number, got {value!r}") from None
    if hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise FlatkdError(f"config key {key!r} expects a string, got {value!r}")
    return value
