"""Typed ``key=value`` overrides of config dataclasses: unknown keys and bad values refused."""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, Iterable

from looplm.errors import LooplmError

MAX_INT = 2**31 - 1  # every whole-number setting is a size or a count


def _convert(raw: str, kind: Any, key: str) -> Any:
    if kind is bool:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise LooplmError(f"{key}={raw!r}: expected true or false")
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        raise LooplmError(f"{key}={raw!r}: expected a value of type {kind.__name__}") from None
    if kind is float and not math.isfinite(value):
        raise LooplmError(f"{key}={raw!r}: expected a finite number")
    if kind is int and abs(value) > MAX_INT:
        raise LooplmError(f"{key}={raw!r}: expected a whole number of at most {MAX_INT:,}")
    return value


def parse_overrides(config_cls: type, pairs: Iterable[str], fixed: tuple[str, ...] = ("vocab_sz",)) -> dict[str, Any]:
    """``["n_hidden=128", "p=0.3"]`` -> ``{"n_hidden": 128, "p": 0.3}``, checked against the dataclass.

    Names in ``fixed`` come from the data, not the user (the vocab size).
    """
    hints = typing.get_type_hints(config_cls)
    fields = {f.name for f in dataclasses.fields(config_cls) if f.init and f.name not in fixed}
    parsed: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise LooplmError(f"bad override {pair!r}: write it as name=value")
        if key not in fields:
            raise LooplmError(
                f"unknown setting {key!r} for {config_cls.__name__}: choose from {', '.join(sorted(fields))}"
            )
        kind = hints[key]
        if typing.get_origin(kind) is not None:  # Optional[...] and friends: take the first concrete type
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        parsed[key] = _convert(raw.strip(), kind, key)
    return parsed
