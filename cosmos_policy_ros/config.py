"""Typed YAML configuration with one-line errors.

Every config file maps onto a dataclass. Loading checks every key against the dataclass fields
(unknown keys, missing keys, wrong types) and raises :class:`ConfigError` whose message names the
file and the dotted key, so a lab sees ``config/robot/x.yaml: limits.shoulder: expected a list of
2 numbers, got 'abc'`` instead of a traceback from deep inside a node.
"""
from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from cosmos_policy_ros.errors import CosmosError, file_head, looks_like

T = TypeVar("T")

PACKAGE_ROOT = Path(__file__).resolve().parent
# Source checkout / editable install: config/ sits beside the package. Installed by colcon:
# share/cosmos_policy_ros/config (found through the ament index when available).
_CANDIDATE_SHARE_DIRS = [PACKAGE_ROOT.parent]


class ConfigError(CosmosError, ValueError):
    """A configuration file is missing, unreadable or does not match its schema."""


def share_dir() -> Path:
    """The folder holding config/, launch/ and rviz/ for this install."""
    for d in _CANDIDATE_SHARE_DIRS:
        if (d / "config").is_dir() and (d / "launch").is_dir():
            return d
    try:  # colcon install on a robot PC
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("cosmos_policy_ros"))
    except Exception:  # noqa: BLE001 - ament_index is optional in the dev venv
        pass
    raise ConfigError("cannot locate the cosmos_policy_ros share folder (config/, launch/)")


def config_path(name: str | Path) -> Path:
    """Resolve ``name``: an existing path as is, else relative to the package's config/ folder."""
    p = Path(name).expanduser()
    if p.is_file():
        return p
    candidate = share_dir() / "config" / p
    if candidate.is_file():
        return candidate
    if candidate.with_suffix(".yaml").is_file():
        return candidate.with_suffix(".yaml")
    raise ConfigError(f"{name}: config file not found (looked as a path and under {share_dir() / 'config'})")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, turning every failure into one ConfigError line."""
    p = config_path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{p}:{where} not valid YAML: {getattr(exc, 'problem', exc)}") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def load(cls: type[T], path: str | Path, overrides: dict[str, Any] | None = None) -> T:
    """Load ``path`` into dataclass ``cls`` (validated); ``overrides`` replace top-level keys."""
    p = config_path(path)
    data = read_yaml(p)
    if overrides:
        data = {**data, **overrides}
    obj = from_dict(cls, data, source=str(p))
    obj_validate = getattr(obj, "validate", None)
    if callable(obj_validate):
        try:
            obj_validate()
        except ConfigError as exc:
            raise ConfigError(f"{p}: {exc}") from None
    return obj


def from_dict(cls: type[T], data: Any, source: str = "<dict>", prefix: str = "") -> T:
    """Build dataclass ``cls`` from plain data, checking keys and types recursively."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {prefix or '<root>'}: expected a mapping, got {_show(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{source}: {_key(prefix, unknown[0])}: unknown key (allowed: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        key = _key(prefix, name)
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{source}: {key}: required key is missing")
            continue
        kwargs[name] = _convert(hints[name], data[name], source, key)
    return cls(**kwargs)


def _convert(tp: Any, value: Any, source: str, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(a, value, source, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{source}: {key}: unexpected null")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, source, key)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key}: expected a list, got {_show(value)}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{source}: {key}: expected a list of {len(args)} items, got {len(value)}")
            return tuple(_convert(a, v, source, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item_t = args[0] if args else Any
        out = [_convert(item_t, v, source, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key}: expected a mapping, got {_show(value)}")
        kt, vt = args if args else (Any, Any)
        return {_convert(kt, k, source, key): _convert(vt, v, source, f"{key}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if typing.get_origin(tp) is typing.Literal:
        if value not in args:
            raise ConfigError(f"{source}: {key}: expected one of {list(args)}, got {_show(value)}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {key}: expected true/false, got {_show(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: {key}: expected a number, got {_show(value)}")
        if not math.isfinite(value):
            raise ConfigError(f"{source}: {key}: expected a finite number, got {value}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {key}: expected an integer, got {_show(value)}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {key}: expected a string, got {_show(value)}")
        return value
    return value


def _key(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def read_json_object(path: Path, what: str, error: type[Exception] = ConfigError) -> dict:
    """A JSON object from ``path``, or one ``error`` line naming the file and what it holds instead
    (a pickle or an image passed where JSON belongs is named as such, never decoded)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: {what} file not found") from None
    except UnicodeDecodeError:
        raise error(f"{path}: unreadable {what} (not JSON: it looks like {looks_like(file_head(path))})") from None
    except json.JSONDecodeError as exc:
        raise error(f"{path}: unreadable {what} (not valid JSON: {exc})") from None
    except OSError as exc:
        raise error(f"{path}: unreadable {what} ({exc.strerror or exc})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: {what} must be a JSON object, got {type(data).__name__}")
    return data
