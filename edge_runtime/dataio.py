"""Typed, frozen dataclasses from plain data (YAML/JSON) and back, with errors that name the
file and the key. Shared by the host configs (training.config) and the bundle schema
(edge_runtime.bundle); torch-free."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

T = TypeVar("T")


class DataError(ValueError):
    """Plain data that does not fit its dataclass; the message names the source and key."""


def read_yaml(path: Path, what: str) -> Any:
    """Parsed YAML of ``path``; DataError with one line when unreadable or invalid."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise DataError(f"{path}: cannot read {what} ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: {what} is not a text file (byte {exc.start} is not "
                        "UTF-8)") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DataError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, where: str) -> Any:
    if tp is Any:  # free-form data (e.g. measurements) passes through unchecked
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if origin is Literal:
        if value not in args:
            raise DataError(f"{where}: must be one of {list(args)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arg, where)
            except DataError as exc:
                errors.append(str(exc))
        raise DataError(errors[-1] if errors else f"{where}: unsupported value {value!r}")
    if origin is dict:
        if not isinstance(value, dict):
            raise DataError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
        return {_convert(k, args[0], f"{where} key {k!r}"): _convert(v, args[1], f"{where}.{k}")
                for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise DataError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise DataError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if tp is bool:
        if not isinstance(value, bool):
            raise DataError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise DataError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DataError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise DataError(f"{where}: expected a string, got {value!r}")
        return value
    raise DataError(f"{where}: unsupported field type {_type_name(tp)}")


def _build(cls: type[T], data: Any, where: str) -> T:
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise DataError(f"{where}: expected a mapping for {cls.__name__}, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise DataError(
            f"{where}: unknown key {unknown[0]!r} for {cls.__name__} "
            f"(known: {', '.join(sorted(fields))})"
        )
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in data
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise DataError(f"{where}: missing key {missing[0]!r} for {cls.__name__}")
    kwargs = {key: _convert(value, hints[key], f"{where}.{key}") for key, value in data.items()}
    return cls(**kwargs)


def from_dict(cls: type[T], data: dict[str, Any], source: str = "<dict>") -> T:
    """Build ``cls`` from plain data, validating keys and types recursively."""
    obj = _build(cls, data, source)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate(source)
    return obj


def to_dict(obj: Any) -> dict[str, Any]:
    """Plain data (lists for tuples) that ``from_dict`` reads back."""
    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(obj))
