"""Write an ExperimentConfig JSON for `cxr-transfer experiment --config`: a base file plus dotted overrides.

Usage: python benchmarks/make_config.py BASE.json OUT.json [field=value ...]
Values are JSON when they parse as JSON (numbers, lists, objects, true/false), strings otherwise, e.g.
    python benchmarks/make_config.py benchmarks/configs/cpu_protocol.json /tmp/c.json transfer.iterations=100 \
        'transfer.predict_views=["translated"]' source_classes='["lungs","heart","clavicles"]'
A JSON object given as ``transfer=<object>`` is merged into the base's transfer fields.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    config = json.loads(Path(argv[0]).read_text())
    for item in argv[2:]:
        key, _, raw = item.partition("=")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        *parents, name = key.split(".")
        holder = config
        for parent in parents:
            holder = holder.setdefault(parent, {})
        if isinstance(value, dict) and isinstance(holder.get(name), dict):
            holder[name].update(value)
        else:
            holder[name] = value
    Path(argv[1]).write_text(json.dumps(config, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
