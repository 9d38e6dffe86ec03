"""Dataclasses from JSON, strictly: an unknown key, a missing one or a value of the wrong type
is one :class:`LooplmError` naming where it is (``config.json: training.bs must be a whole
number, got "64"``). Any file looplm reads back into a config goes through :func:`from_dict`.

Types understood: bool, int, float (an int is accepted; nan and inf are not), str, ``X | None``,
``tuple[float, ...]`` and fixed-length tuples, ``list[X]`` (from JSON lists), ``dict[str, X]``,
and nested dataclasses.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, TypeVar

from looplm.errors import LooplmError

T = TypeVar("T")

_NAMES = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}


def from_dict(cls: type[T], data: Any, where: str, fixed: dict[str, Any] | None = None) -> T:
    """``cls(**data)`` after checking every key and value; ``where`` names ``data`` in messages
    (e.g. ``"config.json: training"``); ``fixed`` adds values that do not come from ``data``."""
    if not isinstance(data, dict):
        raise LooplmError(f"{where} must be a JSON object, got {_show(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.name not in (fixed or {})}
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise LooplmError(f"{where} has an unknown key {unknown[0]!r} (known: {', '.join(fields)})")
    values = dict(fixed or {})
    for name, f in fields.items():
        if name in data:
            values[name] = convert(hints[name], data[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise LooplmError(f"{where} lacks the key {name!r}")
    return cls(**values)


def convert(kind: Any, value: Any, where: str) -> Any:
    """``value`` as type ``kind`` (see the module docstring), or a LooplmError naming ``where``."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        concrete = [a for a in args if a is not type(None)]
        if len(concrete) == 1:
            return convert(concrete[0], value, where)
        raise TypeError(f"{where}: a union of several types is not supported")
    if origin is list:
        if not isinstance(value, list):
            raise LooplmError(f"{where} must be a list, got {_show(value)}")
        return [convert(args[0] if args else Any, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise LooplmError(f"{where} must be a list, got {_show(value)}")
        items = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(items) != len(value):
            raise LooplmError(f"{where} must be a list of {len(items)} values, got {len(value)}")
        return tuple(convert(k, v, f"{where}[{i}]") for i, (k, v) in enumerate(zip(items, value)))
    if origin is dict:
        if not isinstance(value, dict):
            raise LooplmError(f"{where} must be a JSON object, got {_show(value)}")
        inner = args[1] if len(args) == 2 else Any
        return {k: convert(inner, v, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(kind):
        return from_dict(kind, value, where)
    if kind is Any:
        return value
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise LooplmError(f"{where} must be a finite number, got {_show(value)}")
        return float(value)
    if kind in _NAMES and (type(value) is not kind):
        raise LooplmError(f"{where} must be {_NAMES[kind]}, got {_show(value)}")
    return value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
