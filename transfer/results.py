"""The sweep's result file: one JSON line per finished cell, appended atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from runtime.io import atomic_write_text

RESULTS = "results.jsonl"


def read_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a ``results.jsonl`` (a missing file is empty; a torn last line is ignored)."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def append_result(path: str | os.PathLike, row: dict[str, Any]) -> None:
    """Append one JSON line to ``path`` atomically (the file is rewritten whole through a rename)."""
    path = Path(path)
    old = path.read_text() if path.is_file() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    atomic_write_text(path, old + json.dumps(row) + "\n")
