"""Frozen dataclass configurations, saved as JSON beside a run's checkpoints and logs."""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from pathlib import Path
from typing import Any, TypeVar

from runtime.io import atomic_write_json

T = TypeVar("T")


def config_to_dict(config: Any) -> dict[str, Any]:
    """Return a JSON-ready dict of a (possibly nested) dataclass."""
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"expected a dataclass instance, got {type(config).__name__}")
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def config_from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build dataclass ``cls`` from a dict, recursing into nested dataclass fields.

    Raises:
        ValueError: on a key that ``cls`` does not have (names the key and the valid ones).
    """
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; expected some of {sorted(names)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        hint = hints.get(key)
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = config_from_dict(hint, value)
        elif isinstance(value, list) and (hint is tuple or typing.get_origin(hint) is tuple):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def save_config(config: Any, path: str | os.PathLike) -> Path:
    """Write a dataclass configuration as JSON, atomically."""
    return atomic_write_json(path, config_to_dict(config))


def load_config(cls: type[T], path: str | os.PathLike) -> T:
    """Read a configuration written by :func:`save_config`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"configuration {path} does not exist")
    return config_from_dict(cls, json.loads(path.read_text()))
